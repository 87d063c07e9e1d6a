// Command critest-images builds the images critest (sigs.k8s.io/cri-tools v1.37.0)
// pulls, from this machine's busybox, procps and util-linux plus two small static
// stand-ins, and serves them under their repository paths from a registry on
// 127.0.0.1. enroot-cri reaches them through [registries."<host>"] mirrors, so that
// critest pulls them under their real names. It prints "ready HOST:PORT" and serves
// until SIGTERM or SIGINT.
//
// The digest-pinned test-image-digest cannot be rebuilt offline (its digest is fixed):
// it is the one image missing.
//
// With -node-e2e DIR it also serves the images of the Kubernetes node e2e suite
// (nodee2e.go); make test-node-e2e runs it so.
package main

import (
	"archive/tar"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

const staging = "k8s-staging-cri-tools/"

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (loopback)")
	nodeE2E := flag.String("node-e2e", "", "also serve the node e2e suite's images; the directory holds agnhost, localhost.crt and localhost.key")
	bench := flag.Bool("bench", false, "also serve bench/pull:1 (~1 GiB, 10 gzip layers), bench/small:1 (~10 MiB) and bench/big:1 (~2 GiB); and bench/pull:2 from a second registry paced to 1 Gbit/s (printed as \"slow HOST:PORT\")")
	flag.Parse()
	if err := run(*addr, *bench, *nodeE2E); err != nil {
		fmt.Fprintf(os.Stderr, "critest-images: %v\n", err)
		os.Exit(1)
	}
}

// image is one image to build: a marker file, a user, an entrypoint and a command,
// extra entries, and its base when not the common one.
type image struct {
	names      []string
	marker     string
	user       string
	entrypoint []string
	cmd        []string
	extra      []testregistry.Entry
	base       []testregistry.Entry
}

// gigabitPerSecond is a 1 Gbit/s link, in bytes per second.
const gigabitPerSecond = 125e6

func run(addr string, bench bool, nodeE2E string) error {
	work, err := os.MkdirTemp("", "critest-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	web, err := buildStatic(work, "fakeweb")
	if err != nil {
		return err
	}
	nnp, err := buildStatic(work, "nonewprivs")
	if err != nil {
		return err
	}
	passwd := testregistry.DefaultPasswd + "user1000:x:1000:1000::/home/user1000:/bin/sh\n"
	group := testregistry.DefaultGroup + "group1000:x:1000:\ngroup50000:x:50000:user1000\n"
	base, err := testregistry.RootfsEntries([]string{"/usr/bin/pgrep", "/usr/bin/ipcs"}, passwd, group)
	if err != nil {
		return err
	}
	base = append(base, testregistry.Entry{Name: "var/", Type: tar.TypeDir}, testregistry.Entry{Name: "var/run/", Type: tar.TypeDir},
		testregistry.Entry{Name: "home/", Type: tar.TypeDir}, testregistry.Entry{Name: "home/user1000/", Type: tar.TypeDir, UID: 1000, GID: 1000})
	images := []image{
		{names: []string{"e2e-test-images/busybox:1.29-2"}, marker: "busybox", cmd: []string{"sh"}},
		{names: []string{"e2e-test-images/nginx:1.14-2"}, marker: "nginx", cmd: []string{"/usr/sbin/nginx", "master process"},
			extra: []testregistry.Entry{{Name: "usr/sbin/nginx", Body: web, Mode: 0o755}}},
		{names: []string{"e2e-test-images/httpd:2.4.39-4"}, marker: "httpd", cmd: []string{"/usr/local/bin/httpd-foreground"},
			extra: []testregistry.Entry{{Name: "usr/local/bin/httpd-foreground", Body: web, Mode: 0o755}}},
		{names: []string{"e2e-test-images/nonewprivs:1.3"}, marker: "nonewprivs", cmd: []string{"/usr/local/bin/nnp"},
			extra: []testregistry.Entry{{Name: "usr/local/bin/nnp", Body: nnp, Mode: 0o4755}}},
		{names: []string{staging + "hostnet-nginx-" + runtime.GOARCH + ":latest"}, marker: "hostnet-nginx",
			cmd:   []string{"/usr/sbin/nginx", "-port", "12003", "master process"},
			extra: []testregistry.Entry{{Name: "usr/sbin/nginx", Body: web, Mode: 0o755}}},
		{names: []string{staging + "test-image-latest:latest"}, marker: "latest"},
		{names: []string{staging + "test-image-tag:test", staging + "test-image-tag:all"}, marker: "tag"},
		{names: []string{staging + "test-image-1:latest"}, marker: "1"},
		{names: []string{staging + "test-image-2:latest"}, marker: "2"},
		{names: []string{staging + "test-image-3:latest"}, marker: "3"},
		{names: []string{staging + "test-image-tags:1", staging + "test-image-tags:2", staging + "test-image-tags:3"}, marker: "tags"},
		{names: []string{staging + "test-image-user-uid:latest"}, marker: "uid", user: "1002"},
		{names: []string{staging + "test-image-user-username:latest"}, marker: "username", user: "www-data"},
		{names: []string{staging + "test-image-user-uid-group:latest"}, marker: "uid-group", user: "1003:1004"},
		{names: []string{staging + "test-image-user-username-group:latest"}, marker: "username-group", user: "www-data:1004"},
		{names: []string{staging + "test-image-predefined-group:latest"}, marker: "predefined-group", user: "1000"},
		{names: []string{"pause:3.9"}, marker: "pause", cmd: []string{"/bin/sleep", "2147483647"}},
	}
	if nodeE2E != "" {
		more, err := nodeE2EImages(work, nodeE2E, web, nnp)
		if err != nil {
			return err
		}
		images = append(images, more...)
	}
	reg, err := testregistry.Start(testregistry.Options{Addr: addr})
	if err != nil {
		return err
	}
	defer reg.Close()
	for _, im := range images {
		if err := push(reg, base, im); err != nil {
			return err
		}
	}
	if bench {
		slow, err := testregistry.Start(testregistry.Options{Rate: gigabitPerSecond})
		if err != nil {
			return err
		}
		defer slow.Close()
		if err := pushBenchImages(reg, slow, base); err != nil {
			return err
		}
		fmt.Printf("slow %s\n", slow.Host)
	}
	fmt.Printf("ready %s\n", reg.Host)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

func push(reg *testregistry.Registry, base []testregistry.Entry, im image) error {
	if im.base != nil {
		base = im.base
	}
	baseLayer, err := testregistry.Layer(base, testregistry.Gzip, false)
	if err != nil {
		return err
	}
	top, err := testregistry.Layer(append([]testregistry.Entry{{Name: "image-marker", Body: im.marker + "\n"}}, im.extra...),
		testregistry.Gzip, false)
	if err != nil {
		return err
	}
	cmd := im.cmd
	if cmd == nil && im.entrypoint == nil {
		cmd = []string{"sh"}
	}
	img, err := testregistry.Image(v1.Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Entrypoint: im.entrypoint, Cmd: cmd, User: im.user}, false, baseLayer, top)
	if err != nil {
		return err
	}
	for _, n := range im.names {
		if _, err := reg.Push(n, img); err != nil {
			return fmt.Errorf("push %s: %w", n, err)
		}
	}
	return nil
}

// buildStatic builds one of the stand-in programs beside this command as a static
// binary and returns its content.
func buildStatic(work, name string) (string, error) {
	out := filepath.Join(work, name)
	cmd := exec.Command("go", "build", "-o", out, "./tests/cmd/critest-images/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w: %s", name, err, msg)
	}
	data, err := os.ReadFile(out)
	return string(data), err
}
