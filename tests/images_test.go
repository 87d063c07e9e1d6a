package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

func startRegistry(t *testing.T, opts testregistry.Options) *testregistry.Registry {
	t.Helper()
	reg, err := testregistry.Start(opts)
	require.NoError(t, err)
	t.Cleanup(reg.Close)
	return reg
}

// pushBusybox pushes the busybox test image under each name.
func pushBusybox(t *testing.T, reg *testregistry.Registry, names ...string) {
	t.Helper()
	needTools(t, "busybox")
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	l, err := testregistry.Layer(entries, testregistry.Gzip, false)
	require.NoError(t, err)
	img, err := testregistry.Image(v1.Config{Cmd: []string{"/bin/sh"}, User: "www-data", Env: []string{"PATH=/bin"}}, false, l)
	require.NoError(t, err)
	for _, n := range names {
		_, err := reg.Push(n, img)
		require.NoError(t, err)
	}
}

// crictl runs bin/crictl against the daemon and returns its stdout.
func (d *daemon) crictl(t *testing.T, args ...string) string {
	t.Helper()
	bin := crictlBin()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("crictl is not built (make crictl): %v", err)
	}
	cfg := filepath.Join(d.dir, "crictl.yaml")
	if _, err := os.Stat(cfg); err != nil {
		yaml := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", d.socket, d.socket)
		require.NoError(t, os.WriteFile(cfg, []byte(yaml), 0o644))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--config", cfg}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "crictl %v: %s", args, stderr.String())
	return string(out)
}

func TestCrictlImageCommands(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	pushBusybox(t, reg, "library/busybox:1.36", "e2e-test-images/busybox:1.29-2")
	d := newDaemon(t, fmt.Sprintf(`
[registries."docker.io"]
mirrors = ["http://%[1]s"]
[registries."registry.k8s.io"]
mirrors = ["http://%[1]s"]
`, reg.Host))
	d.start(t)

	out := d.crictl(t, "pull", "busybox:1.36")
	assert.Regexp(t, `Image is up to date for sha256:[0-9a-f]{64}`, out)
	d.crictl(t, "pull", "registry.k8s.io/e2e-test-images/busybox:1.29-2")

	out = d.crictl(t, "images")
	assert.Contains(t, out, "docker.io/library/busybox")
	assert.Contains(t, out, "registry.k8s.io/e2e-test-images/busybox")
	assert.Len(t, lines(out), 3, "a header and one line per tag of the one image:\n%s", out)

	var inspect struct {
		Status struct {
			ID          string   `json:"id"`
			RepoTags    []string `json:"repoTags"`
			RepoDigests []string `json:"repoDigests"`
			Username    string   `json:"username"`
		} `json:"status"`
		Info struct {
			Squashfs string `json:"squashfs"`
		} `json:"info"`
	}
	require.NoError(t, json.Unmarshal([]byte(d.crictl(t, "inspecti", "-o", "json", "busybox:1.36")), &inspect))
	assert.ElementsMatch(t, []string{"docker.io/library/busybox:1.36", "registry.k8s.io/e2e-test-images/busybox:1.29-2"}, inspect.Status.RepoTags)
	assert.Equal(t, "www-data", inspect.Status.Username)
	assert.FileExists(t, inspect.Info.Squashfs)
	// The squashfs is an Enroot image: busybox runs from it and /etc/rc is Enroot's.
	rc, err := exec.Command("unsquashfs", "-cat", inspect.Info.Squashfs, "etc/rc").Output()
	require.NoError(t, err)
	assert.Contains(t, string(rc), "    exec  '/bin/sh'\n", "no entrypoint: Enroot's two spaces")

	out = d.crictl(t, "imagefsinfo")
	assert.Contains(t, out, filepath.Join(d.dir, "root"))

	d.crictl(t, "rmi", "registry.k8s.io/e2e-test-images/busybox:1.29-2")
	out = d.crictl(t, "images", "-q")
	assert.Equal(t, []string{inspect.Status.ID}, lines(out), "removing one tag keeps the image")
	d.crictl(t, "rmi", inspect.Status.ID[len("sha256:"):][:12])
	assert.Empty(t, strings.TrimSpace(d.crictl(t, "images", "-q")))
	assert.NoFileExists(t, inspect.Info.Squashfs)
}

func TestImagesSurviveRestart(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	pushBusybox(t, reg, "keep/busybox:1")
	d := newDaemon(t, "")
	d.start(t)
	ref := reg.Host + "/keep/busybox:1"
	pulled, err := d.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	require.NoError(t, err)
	require.NoError(t, d.stop(t))

	d.start(t)
	st, err := d.images.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	require.NoError(t, err)
	require.NotNil(t, st.Image)
	assert.Equal(t, pulled.ImageRef, st.Image.Id)
}

// An empty or corrupt image record is moved aside and logged; the daemon serves the
// other images.
func TestCorruptImageRecordIsSetAside(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	pushBusybox(t, reg, "keep/busybox:1")
	d := newDaemon(t, "")
	d.start(t)
	ref := reg.Host + "/keep/busybox:1"
	_, err := d.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	require.NoError(t, err)
	require.NoError(t, d.stop(t))
	images := filepath.Join(d.dir, "root", "images")
	bad := strings.Repeat("ab", 32)
	require.NoError(t, os.WriteFile(filepath.Join(images, bad+".json"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(images, bad+".sqsh"), []byte("x"), 0o600))
	d.start(t)
	st, err := d.images.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	require.NoError(t, err)
	assert.NotNil(t, st.Image, "the good image is still served")
	assert.NoFileExists(t, filepath.Join(images, bad+".json"))
	moved, _ := filepath.Glob(filepath.Join(images, "quarantine", "*", bad+".*"))
	assert.Len(t, moved, 2, "the record and its squashfs are kept aside for the operator")
	assert.Contains(t, d.log.String(), "image record unreadable")
}

func TestPullKilledMidwayLeavesNothing(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{BlobStall: time.Hour})
	pushBusybox(t, reg, "slow/busybox:1")
	d := newDaemon(t, "")
	d.start(t)
	ref := reg.Host + "/slow/busybox:1"
	go d.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	staging := filepath.Join(d.dir, "root", "tmp")
	blobs := filepath.Join(d.dir, "root", "blobs")
	poll(t, func() bool {
		partial, _ := filepath.Glob(filepath.Join(blobs, ".tmp-blob-*"))
		return len(partial) > 0
	}, 30*time.Second, 20*time.Millisecond, "the download never started")
	d.kill() // kill -9 in the middle of the download

	d.start(t)
	list, err := d.images.ListImages(context.Background(), &runtimeapi.ListImagesRequest{})
	require.NoError(t, err)
	assert.Empty(t, list.Images, "an interrupted pull leaves no visible image")
	for _, dir := range []string{staging, blobs, filepath.Join(d.dir, "root", "images")} {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		assert.Empty(t, entries, "its temporaries are removed at the next start: %s", dir)
	}
}

func crictlBin() string {
	if bin := os.Getenv("CRICTL"); bin != "" {
		return bin
	}
	return "../bin/crictl"
}
