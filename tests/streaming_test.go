package tests

import (
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestExecSync(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("execsync", nil)
	pod := e.runPod(t, cfg)
	id := e.run(t, pod, cfg, "c", `echo secret > /tmp/state; exec sleep 1000`)
	ctx := context.Background()
	var resp *runtimeapi.ExecSyncResponse
	poll(t, func() bool {
		var err error
		resp, err = e.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id,
			Cmd: []string{"/bin/sh", "-c", `cat /tmp/state; id -un; echo oops >&2; exit 5`}})
		return err == nil && strings.HasPrefix(string(resp.Stdout), "secret")
	}, 10*time.Second, 50*time.Millisecond)
	assert.Equal(t, "secret\nwww-data\n", string(resp.Stdout), "exec sees the container's files and runs as its user")
	assert.Equal(t, "oops\n", string(resp.Stderr))
	assert.Equal(t, int32(5), resp.ExitCode)

	ps, err := e.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"ps", "-o", "pid,args"}})
	require.NoError(t, err)
	// With no namespace options the CRI default is the pod's PID namespace (as with
	// containerd's pause container): the holder is PID 1 and the container's sleep is in it.
	assert.Regexp(t, `(?m)^\s+1 .*pod-holder`, string(ps.Stdout), "exec is in the container's PID namespace")
	assert.Regexp(t, `(?m)^\s+\d+ sleep 1000$`, string(ps.Stdout))

	start := time.Now()
	_, err = e.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sleep", "30"}, Timeout: 1})
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	assert.Less(t, time.Since(start), 25*time.Second, "the timeout ended the command")
	ps, err = e.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"ps", "-o", "args"}})
	require.NoError(t, err)
	assert.NotContains(t, string(ps.Stdout), "sleep 30", "the timed-out command was killed")

	_, err = e.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	resp, err = e.runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"no-such-command"}})
	require.NoError(t, err)
	assert.NotZero(t, resp.ExitCode)
	assert.Contains(t, string(resp.Stderr), "not found")
}

func TestExecAttachAndPortForwardThroughCrictl(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("stream", nil)
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", `mkdir -p /tmp/www && echo forwarded > /tmp/www/index.html && ` +
			`httpd -p 8080 -h /tmp/www && while read line; do echo "echo:$line"; done`},
		Stdin: true, LogPath: "c.log",
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)

	out := e.crictl(t, "exec", id, "/bin/sh", "-c", "echo from-exec; hostname")
	assert.Equal(t, []string{"from-exec", "stream"}, lines(out))

	// Attach: what we send to stdin comes back through the container's stdout.
	attach := e.crictlCmd(t, "attach", "--stdin", id)
	stdin, err := attach.StdinPipe()
	require.NoError(t, err)
	stdout, err := attach.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, attach.Start())
	_, err = io.WriteString(stdin, "hello-attach\n")
	require.NoError(t, err)
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := io.ReadAtLeast(stdout, buf, len("echo:hello-attach"))
		got <- string(buf[:n])
	}()
	select {
	case s := <-got:
		assert.Contains(t, s, "echo:hello-attach")
	case <-time.After(20 * time.Second):
		t.Fatal("no echo through attach")
	}
	_ = attach.Process.Kill()
	_ = attach.Wait()
	assert.Contains(t, e.logText(t, id), "stdout F echo:hello-attach", "attached input is logged like any output")

	// Port-forward: a local port reaches the container's 8080 inside the pod network.
	local := freePort(t)
	pf := e.crictlCmd(t, "port-forward", pod, strconv.Itoa(local)+":8080")
	require.NoError(t, pf.Start())
	defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
	var body string
	poll(t, func() bool {
		var code int
		var err error
		body, code, err = getLocal(local)
		return err == nil && code == http.StatusOK
	}, 20*time.Second, 100*time.Millisecond)
	assert.Equal(t, "forwarded\n", body)
}

// A terminal is made in the container's own devpts: tty(1) names it there, for the
// container's process and for exec -t, under both kinds of handler.
func TestTerminalInsideTheContainer(t *testing.T) {
	e := newPodEnv(t)
	for _, handler := range []string{"", "enroot"} {
		cfg := e.podConfig("tty-"+handler, nil)
		pod := e.runPodWith(t, cfg, handler)
		id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Command: []string{"/bin/sh", "-c", `tty; ls /dev/pts; exec sleep 1000`}, Tty: true, LogPath: "c.log",
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser: &runtimeapi.Int64Value{Value: 0}}},
		})
		_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
		require.NoError(t, err)
		poll(t, func() bool { return strings.Contains(e.logText(t, id), "ptmx") }, 10*time.Second, 50*time.Millisecond)
		assert.Contains(t, e.logText(t, id), "stdout F /dev/pts/0", handler)
		// crictl wants a terminal of its own: script(1) gives it one.
		crictl := e.crictlCmd(t, "exec", "-it", id, "/bin/sh", "-c", "tty; stty size")
		cmd := exec.Command("script", "-qec", strings.Join(crictl.Args, " "), "/dev/null")
		raw, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", raw)
		out := string(raw)
		assert.Regexp(t, `/dev/pts/\d+`, out, "exec -t gets a terminal of the container (%s)", handler)
		assert.NotContains(t, out, "not a tty", handler)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// crictlCmd returns an unstarted crictl command against the daemon.
func (d *daemon) crictlCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	d.crictl(t, "version") // writes the config, skips without crictl
	return exec.Command(crictlBin(), append([]string{"--config", d.dir + "/crictl.yaml"}, args...)...)
}

// getLocal GETs / on a port of 127.0.0.1 (a port-forward's local end).
func getLocal(port int) (body string, code int, err error) {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}
