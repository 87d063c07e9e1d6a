package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var enrootCRI string // path of the binary under test

// nvmlFake is enroot-cri-nvml built with go-nvml's fake machines; empty when it could
// not be built (no C compiler), and the GPU tests skip.
var nvmlFake string

func TestMain(m *testing.M) {
	enrootCRI = os.Getenv("ENROOT_CRI_BIN")
	nvmlFake = os.Getenv("ENROOT_CRI_NVML_FAKE")
	if _, err := os.Stat(nvmlFake); nvmlFake != "" && err != nil {
		fmt.Fprintf(os.Stderr, "no fake NVML helper at %s, GPU tests will skip: %v\n", nvmlFake, err)
		nvmlFake = ""
	}
	if enrootCRI == "" {
		dir, err := os.MkdirTemp("", "enroot-cri-bin-")
		if err != nil {
			panic(err)
		}
		// Jobs' users run it too (the pyxis importer).
		if err := os.Chmod(dir, 0o755); err != nil {
			panic(err)
		}
		enrootCRI = filepath.Join(dir, "enroot-cri")
		// Static: exec runs it inside containers. The monitor binary goes beside it,
		// where the daemon looks for it.
		for name, pkg := range map[string]string{"enroot-cri": "../cmd/enroot-cri", "enroot-cri-shim": "../cmd/enroot-cri-shim"} {
			build := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, out)
				os.Exit(1)
			}
		}
		nvmlFake = filepath.Join(dir, "enroot-cri-nvml-fake")
		build := exec.Command("go", "build", "-tags", "fakenvml", "-o", nvmlFake, "../cmd/enroot-cri-nvml")
		build.Env = append(os.Environ(), "CGO_ENABLED=1", "CGO_CFLAGS=-O2 -Wno-deprecated-declarations")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "no fake NVML helper, GPU tests will skip: %v\n%s", err, out)
			nvmlFake = ""
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// daemon is one enroot-cri serve process on a scratch configuration.
type daemon struct {
	dir, socket, config string
	cmd                 *exec.Cmd
	log                 *bytes.Buffer
	// inherit are descriptors the daemon is started with, as a careless service
	// manager or shell might leave them; wrapper, when set, starts it.
	inherit []*os.File
	wrapper []string
	conn    *grpc.ClientConn
	runtime runtimeapi.RuntimeServiceClient
	images  runtimeapi.ImageServiceClient
}

// newDaemon writes a scratch configuration (extra is appended to it) in a new dir.
func newDaemon(t *testing.T, extra string) *daemon {
	t.Helper()
	needTools(t, "mksquashfs", "unsquashfs")
	dir := t.TempDir()
	d := &daemon{dir: dir, socket: filepath.Join(dir, "enroot-cri.sock"), config: filepath.Join(dir, "config.toml")}
	// The Slurm cgroup.conf is the test's own (absent unless a test writes it), never
	// the host's.
	cfg := fmt.Sprintf("socket = %q\nroot = %q\nstate = %q\n[cgroups]\nslurm_cgroup_conf = %q\n",
		d.socket, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.slurmConf())
	if !strings.Contains(extra, "[enroot]\n") { // the test's own Enroot configuration, never the host's
		cfg += fmt.Sprintf("[enroot]\nconfig_dir = %q\n", filepath.Join(dir, "enroot"))
	}
	cfg += extra
	require.NoError(t, os.WriteFile(d.config, []byte(cfg), 0o644))
	return d
}

// start runs the daemon and waits until it answers Version.
func (d *daemon) start(t *testing.T) {
	t.Helper()
	require.NoError(t, d.launch())
	if d.conn == nil {
		// Once, and first: cleanups run last-registered first, so later ones (pod
		// removal) still have a daemon and a connection.
		t.Cleanup(func() {
			d.conn.Close()
			d.kill()
		})
	} else {
		d.conn.Close()
	}
	conn, err := grpc.NewClient("unix://"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	d.conn = conn
	d.runtime = runtimeapi.NewRuntimeServiceClient(conn)
	d.images = runtimeapi.NewImageServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := d.runtime.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not become ready: %v\n%s", err, d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// launch starts the daemon's process without waiting for it to answer.
func (d *daemon) launch() error {
	argv := append(append([]string{}, d.wrapper...), enrootCRI, "serve", "--config", d.config)
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.log = &bytes.Buffer{}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.ExtraFiles = d.inherit
	return d.cmd.Start()
}

// stop sends SIGTERM and waits for the exit status.
func (d *daemon) stop(t *testing.T) error {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	return d.cmd.Wait()
}

func (d *daemon) kill() {
	if d.cmd != nil && d.cmd.ProcessState == nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
	}
}

// slurmConf is where the daemon reads Slurm's cgroup.conf.
func (d *daemon) slurmConf() string { return filepath.Join(d.dir, "slurm", "cgroup.conf") }

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps installs it)", tool)
		}
	}
}

// runCLI runs the binary with args and returns its combined output and exit code.
func runCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, enrootCRI, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	require.NoError(t, err)
	return string(out), 0
}

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
