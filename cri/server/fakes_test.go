package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/cri/server/fake"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/ledger"
	"github.com/enroot-cri/enroot-cri/mig"
)

// The fakes are the seams the server runs on.
var (
	_ Engine      = (*fake.Engine)(nil)
	_ ImageMounts = (*fake.Mounts)(nil)
	_ Images      = (*fake.Images)(nil)
	_ Sandboxes   = (*fake.Sandboxes)(nil)
	_ Network     = (*fake.Network)(nil)
	_ Cgroups     = (*fake.Cgroups)(nil)
)

// TestMain keeps the handlers' logs (the default logger, where a call's context has
// none) out of the test output.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

// fakeNode is a server of the shipped configuration on fakes: no root, no mounts, no
// namespaces. Its GPU ledger is the real one, in the test's directory.
type fakeNode struct {
	*fake.Host
	srv    *Server
	cfg    config.Config
	ledger *ledger.Ledger
	// imageRoot is the root filesystem the test image mounts as: its /etc/passwd
	// and /etc/group are the image's users.
	imageRoot string
}

// testImage is the image every fake node has, by tag and ID.
var testImage = &image.Image{
	ID: "sha256:" + "1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef", RepoTags: []string{"example.test/app:1"},
	Env: []string{"PATH=/usr/bin:/bin", "FROM_IMAGE=yes", "SHARED=image"}, Cmd: []string{"/bin/app"}, Squashfs: "/fake/app.sqsh",
}

// newFakeNode starts a fake node; edit changes the configuration (a test says why a
// user would) or the node's parts before the server is made.
func newFakeNode(t *testing.T, edit func(*config.Config, *Options)) *fakeNode {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Root, cfg.State = filepath.Join(dir, "root"), filepath.Join(dir, "state")
	cfg.CNI.ConfDir = filepath.Join(dir, "cni")
	// No cgroup.conf: Slurm's defaults, whatever this machine's /etc/slurm holds.
	cfg.Cgroups.SlurmCgroupConf = filepath.Join(dir, "cgroup.conf")
	// An empty Enroot configuration: Enroot's defaults, whatever this machine's
	// /etc/enroot holds.
	cfg.Enroot.ConfigDir = filepath.Join(dir, "enroot")
	cfg.GPUs.CDISpecDirs = []string{filepath.Join(dir, "cdi")}
	host := fake.NewHost(filepath.Join(dir, "images"))
	n := &fakeNode{Host: host, imageRoot: filepath.Join(dir, "image-root")}
	writeFile(t, filepath.Join(n.imageRoot, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
	writeFile(t, filepath.Join(n.imageRoot, "etc/group"), "root:x:0:\napp:x:1000:\nvideo:x:44:app\n")
	host.Mounts.Roots = map[string]string{testImage.ID: n.imageRoot}
	host.Images.Add(testImage)
	node := cgroups.Node{RAMMiB: 16 << 10, CPUs: []int{0, 1, 2, 3}}
	noGPUs := mig.Inventory{Unavailable: "this test's node has none"}
	opts := Options{
		Engine: host.Engine, Mounts: host.Mounts, Sandboxes: host.Sandboxes, Network: host.Network, Cgroups: host.Cgroups,
		GPUs: &noGPUs, Node: &node,
	}
	if edit != nil {
		edit(&cfg, &opts)
	}
	n.cfg = cfg
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), opts)
	require.NoError(t, err)
	require.NoError(t, srv.Ready(host.Images))
	n.srv = srv
	n.ledger = &ledger.Ledger{Path: cfg.LedgerPath()}
	return n
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: name + "-uid"},
		LogDirectory: "/var/log/pods/" + name,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/kubepods/pod" + name},
	}
}

// runPod runs a pod of cfg on the node.
func (n *fakeNode) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig, handler string) string {
	t.Helper()
	resp, err := n.srv.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	require.NoError(t, err)
	return resp.GetPodSandboxId()
}

func containerConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: testImage.RepoTags[0]},
		LogPath:  name + ".log",
	}
}

// create creates a container of cfg in pod podID.
func (n *fakeNode) create(podID string, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) (string, error) {
	resp, err := n.srv.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	return resp.GetContainerId(), err
}

// podWithContainer runs a pod of podConfig("p") changed by editPod, of handler, and
// creates in it a container of containerConfig("c") changed by editCtr.
func (n *fakeNode) podWithContainer(t *testing.T, handler string, editPod func(*runtimeapi.PodSandboxConfig),
	editCtr func(*runtimeapi.ContainerConfig)) (podID, id string, err error) {
	t.Helper()
	pod := podConfig("p")
	if editPod != nil {
		editPod(pod)
	}
	podID = n.runPod(t, pod, handler)
	cfg := containerConfig("c")
	if editCtr != nil {
		editCtr(cfg)
	}
	id, err = n.create(podID, pod, cfg)
	return podID, id, err
}

// concurrently makes times calls at once and counts those that succeed; the others'
// errors are returned.
func concurrently(times int, call func() error) (ok int, errs []error) {
	results := make(chan error, times)
	for range times {
		go func() { results <- call() }()
	}
	for range times {
		if err := <-results; err != nil {
			errs = append(errs, err)
		} else {
			ok++
		}
	}
	return ok, errs
}

// pendingCreates are the creates written down and not finished or undone.
func (n *fakeNode) pendingCreates(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(n.srv.pendingDir())
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
