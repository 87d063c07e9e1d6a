package main

import (
	"archive/tar"
	"fmt"
	"os"
	"path/filepath"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// e2e is the repository of the Kubernetes test images.
const e2e = "e2e-test-images/"

// nodeE2EImages are the images the Kubernetes node e2e suite (k8s.io/kubernetes
// test/e2e_node, v1.37) runs, under its names (test/utils/image/manifest.go), built
// from this machine's binaries and the stand-ins beside this command. dir holds agnhost
// (built from the Kubernetes module) and porter's localhost.crt and localhost.key.
func nodeE2EImages(work, dir, web, nnp string) ([]image, error) {
	read := func(name string) (string, error) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		return string(data), err
	}
	agnhost, err := read("agnhost")
	if err != nil {
		return nil, fmt.Errorf("-node-e2e: %w", err)
	}
	crt, err := read("localhost.crt")
	if err != nil {
		return nil, fmt.Errorf("-node-e2e: %w", err)
	}
	key, err := read("localhost.key")
	if err != nil {
		return nil, fmt.Errorf("-node-e2e: %w", err)
	}
	pause, err := buildStatic(work, "pause")
	if err != nil {
		return nil, err
	}
	nmeter, err := buildStatic(work, "nmeter")
	if err != nil {
		return nil, err
	}
	nc, err := buildStatic(work, "nc")
	if err != nil {
		return nil, err
	}
	// agnhost's image: its user and group, bash, curl, nmeter and a netcat with UDP,
	// the porter certificates, /agnhost-2.
	passwd := testregistry.DefaultPasswd + "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"
	group := testregistry.DefaultGroup + "user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n"
	agnBase, err := testregistry.RootfsEntries([]string{"/bin/bash", "/usr/bin/curl"}, passwd, group)
	if err != nil {
		return nil, err
	}
	agnBase = append(agnBase, testregistry.Entry{Name: "home/", Type: tar.TypeDir},
		testregistry.Entry{Name: "home/user-defined-in-image/", Type: tar.TypeDir, UID: 1000, GID: 1000},
		testregistry.Entry{Name: "uploads/", Type: tar.TypeDir},
		testregistry.Entry{Name: "agnhost", Body: agnhost, Mode: 0o755},
		testregistry.Entry{Name: "agnhost-2", Type: tar.TypeSymlink, Linkname: "agnhost"},
		testregistry.Entry{Name: "bin/nmeter", Body: nmeter, Mode: 0o755}, // Alpine's busybox has it
		testregistry.Entry{Name: "localhost.crt", Body: crt, Mode: 0o644},
		testregistry.Entry{Name: "localhost.key", Body: key, Mode: 0o644})
	glibc, err := testregistry.RootfsEntries([]string{"/usr/bin/getent"}, testregistry.DefaultPasswd, testregistry.DefaultGroup)
	if err != nil {
		return nil, err
	}
	nginx := []testregistry.Entry{{Name: "usr/sbin/nginx", Body: web, Mode: 0o755}}
	return []image{
		{names: []string{e2e + "agnhost:2.66.1", e2e + "agnhost:2.55"}, marker: "agnhost", base: agnBase,
			entrypoint: []string{"/agnhost"}, cmd: []string{"pause"},
			extra: []testregistry.Entry{{Name: "bin/nc", Body: nc, Mode: 0o755}}}, // busybox's nc with -u
		{names: []string{e2e + "busybox:1.37.0-2"}, marker: "busybox", cmd: []string{"sh"},
			extra: []testregistry.Entry{{Name: "bin/nmeter", Body: nmeter, Mode: 0o755}}},
		{names: []string{e2e + "nginx:1.27.0-2", e2e + "nginx:1.28.0-2"}, marker: "nginx",
			cmd: []string{"/usr/sbin/nginx", "master process"}, extra: nginx},
		{names: []string{e2e + "nonewprivs:1.4"}, marker: "nonewprivs", cmd: []string{"nnp"},
			extra: []testregistry.Entry{{Name: "usr/local/bin/nnp", Body: nnp, Mode: 0o4755}}},
		{names: []string{e2e + "nonroot:1.5"}, marker: "nonroot", user: "1234"},
		{names: []string{e2e + "glibc-dns-testing:2.1.1"}, marker: "glibc-dns-testing", base: glibc},
		{names: []string{"pause:3.10.2"}, marker: "pause", entrypoint: []string{"/pause"},
			extra: []testregistry.Entry{{Name: "pause", Body: pause, Mode: 0o755}}},
	}, nil
}
