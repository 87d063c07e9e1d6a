package container

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/internal/sealed"
	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// The test binary doubles as enroot-cri for the shim and init it starts.
func TestMain(m *testing.M) {
	switch {
	case len(os.Args) == 3 && os.Args[1] == "shim":
		if RunShim(os.Args[2]) != nil {
			os.Exit(1)
		}
		os.Exit(0)
	case len(os.Args) == 2 && os.Args[1] == "init":
		_ = RunInit()
		os.Exit(127)
	}
	os.Exit(m.Run())
}

type fixture struct {
	engine *Engine
	mounts *ImageMounts
	image  *image.Image
	dir    string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containers need root")
	}
	for _, tool := range []string{"mksquashfs", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := t.TempDir()
	reg, err := testregistry.Start(testregistry.Options{})
	require.NoError(t, err)
	t.Cleanup(reg.Close)
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	l, err := testregistry.Layer(entries, testregistry.Gzip, true)
	require.NoError(t, err)
	im, err := testregistry.Image(v1.Config{Env: []string{"PATH=/bin"}}, true, l)
	require.NoError(t, err)
	_, err = reg.Push("busybox:1", im)
	require.NoError(t, err)
	store, err := image.Open(image.Options{Root: filepath.Join(dir, "images"), SquashOptions: enroot.DefaultSquashOptions, MaxConcurrentDownloads: 2})
	require.NoError(t, err)
	img, err := store.Pull(context.Background(), reg.Host+"/busybox:1", image.PullOptions{})
	require.NoError(t, err)
	exe, err := os.Executable()
	require.NoError(t, err)
	bin, err := sealed.Copy(exe)
	require.NoError(t, err)
	t.Cleanup(func() { bin.Close() })
	f := &fixture{
		engine: &Engine{StateDir: filepath.Join(dir, "state"), RootDir: filepath.Join(dir, "layers"), LogDir: filepath.Join(dir, "monitors"), Exe: exe, Sealed: bin},
		mounts: &ImageMounts{Dir: filepath.Join(dir, "mnt")},
		image:  img,
		dir:    dir,
	}
	t.Cleanup(func() { assertNoMountsUnder(t, dir) })
	return f
}

func (f *fixture) config(t *testing.T, id string, args ...string) *Config {
	t.Helper()
	root, err := f.mounts.Acquire(context.Background(), f.image.ID, f.image.Squashfs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.mounts.Release(f.image.ID) })
	return &Config{
		ID: id,
		Spec: specs.Spec{
			Process: &specs.Process{Args: args, Env: []string{"PATH=/bin", "GREETING=hi"}, Cwd: "/"},
			Root:    &specs.Root{Path: root},
			Mounts:  DefaultMounts(""),
			Linux: &specs.Linux{Devices: DefaultDevices(),
				Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
		},
		LogPath: filepath.Join(f.dir, "logs", id+".log"),
	}
}

func assertNoMountsUnder(t *testing.T, dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	assert.NotContains(t, string(data), dir, "mounts left behind")
}

func TestContainerRunsLogsAndExits(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(t, "c1", "/bin/sh", "-c", `echo "$GREETING from $$"; echo oops >&2; ls /dev; cat /proc/mounts | grep -c overlay; exit 3`)
	ctx := context.Background()
	pid, err := f.engine.Create(ctx, cfg)
	require.NoError(t, err)
	assert.Positive(t, pid)
	st := f.engine.State("c1")
	assert.True(t, st.ShimAlive)
	assert.Nil(t, st.Exit, "a created container waits for start")

	require.NoError(t, f.engine.Start(ctx, "c1"))
	exit, err := f.engine.Wait(ctx, "c1")
	require.NoError(t, err)
	assert.Equal(t, 3, exit.Code)

	log, err := os.ReadFile(cfg.LogPath)
	require.NoError(t, err)
	text := string(log)
	assert.Regexp(t, `(?m)^\S+ stdout F hi from 1$`, text, "the command is PID 1 of its own PID namespace")
	assert.Regexp(t, `(?m)^\S+ stderr F oops$`, text)
	for _, dev := range []string{"null", "zero", "urandom", "tty", "pts", "shm", "mqueue", "fd"} {
		assert.Regexp(t, `(?m) F `+dev+`$`, text)
	}
	require.NoError(t, f.engine.Delete("c1"))
	assert.NoDirExists(t, f.engine.Bundle("c1"))
	assert.NoDirExists(t, f.engine.Layer("c1"))
}

func TestContainerKilledBySignal(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.engine.Create(ctx, f.config(t, "c2", "sleep", "1000"))
	require.NoError(t, err)
	require.NoError(t, f.engine.Start(ctx, "c2"))
	// sleep as PID 1 of its namespace ignores SIGTERM; SIGKILL always works.
	require.NoError(t, f.engine.Signal("c2", syscall.SIGKILL))
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	exit, err := f.engine.Wait(wctx, "c2")
	require.NoError(t, err)
	assert.Equal(t, 137, exit.Code)
	assert.Equal(t, "SIGKILL", exit.Signal)
	require.NoError(t, f.engine.Delete("c2"))
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	f := newFixture(t)
	_, err := f.engine.Create(context.Background(), f.config(t, "c3", "no-such-command"))
	require.Error(t, err)
	assert.ErrorContains(t, err, `"no-such-command" not found`)
	assert.NoDirExists(t, f.engine.Bundle("c3"))
	assert.NoDirExists(t, f.engine.Layer("c3"))
}

func TestDeleteCreatedContainer(t *testing.T) {
	f := newFixture(t)
	_, err := f.engine.Create(context.Background(), f.config(t, "c4", "true"))
	require.NoError(t, err)
	require.NoError(t, f.engine.Delete("c4"))
	assert.False(t, f.engine.State("c4").ShimAlive)
}

func TestTerminalOutputIsLogged(t *testing.T) {
	f := newFixture(t)
	cfg := f.config(t, "c5", "/bin/sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo on-a-terminal")
	cfg.Spec.Process.Terminal = true
	ctx := context.Background()
	_, err := f.engine.Create(ctx, cfg)
	require.NoError(t, err)
	require.NoError(t, f.engine.Start(ctx, "c5"))
	exit, err := f.engine.Wait(ctx, "c5")
	require.NoError(t, err)
	assert.Equal(t, 0, exit.Code)
	log, err := os.ReadFile(cfg.LogPath)
	require.NoError(t, err)
	assert.Contains(t, string(log), "stdout F on-a-terminal")
	require.NoError(t, f.engine.Delete("c5"))
}
