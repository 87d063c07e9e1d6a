package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPodWithTwoContainersOnABridge(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("web", nil)
	pod := e.runPod(t, cfg)

	st, err := e.runtime.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	require.NoError(t, err)
	assert.Equal(t, runtimeapi.PodSandboxState_SANDBOX_READY, st.Status.State)
	ip := net.ParseIP(st.Status.Network.GetIp())
	_, subnet, _ := net.ParseCIDR(e.subnet)
	require.True(t, subnet.Contains(ip), "pod IP %s in %s", ip, e.subnet)

	server := e.run(t, pod, cfg, "server", `mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www`)
	client := e.run(t, pod, cfg, "client",
		`for i in $(seq 100); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1`)
	cst := e.waitExited(t, client)
	assert.Equal(t, int32(0), cst.ExitCode, "client:\n%s\nserver:\n%s", e.logText(t, client), e.logText(t, server))
	assert.Equal(t, "Completed", cst.Reason)
	assert.Regexp(t, `(?m)^\S+ stdout F hello-from-web$`, e.logText(t, client))

	// The host reaches the server on the pod IP through the bridge.
	resp, err := http.Get("http://" + ip.String() + ":8080/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "hello-from-web\n", string(body))
}

func TestExitCodesAndLogs(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("exits", nil)
	pod := e.runPod(t, cfg)
	cases := []struct {
		name, script, reason string
		code                 int32
	}{
		{"zero", "echo out; echo err >&2", "Completed", 0},
		{"three", "exit 3", "Error", 3},
		{"killed", "kill -KILL $$", "Error", 137},
	}
	for _, c := range cases {
		id := e.run(t, pod, cfg, c.name, c.script)
		st := e.waitExited(t, id)
		assert.Equal(t, c.code, st.ExitCode, c.name)
		assert.Equal(t, c.reason, st.Reason, c.name)
		assert.NotZero(t, st.StartedAt)
		assert.GreaterOrEqual(t, st.FinishedAt, st.StartedAt)
	}
	ids, err := e.runtime.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}, PodSandboxId: pod}})
	require.NoError(t, err)
	assert.Len(t, ids.Containers, 3)

	zero := ids.Containers[0].Id
	for _, c := range ids.Containers {
		if c.Metadata.Name == "zero" {
			zero = c.Id
		}
	}
	log := e.logText(t, zero)
	record := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (stdout|stderr) [PF] .*$`)
	for _, line := range lines(log) {
		assert.Regexp(t, record, line)
	}
	assert.Contains(t, log, " stdout F out\n")
	assert.Contains(t, log, " stderr F err\n")
	assert.Equal(t, []string{"out"}, lines(e.crictl(t, "logs", "--stream", "stdout", zero)))
}

// TestTheLogHoldsAllOfAnExitedContainersOutput: a container that prints and exits at
// once has its output in its log by the time it is EXITED (the kubelet reads the log
// of a finished pod right away), also on a busy node. The monitor used to close the
// pipes as soon as the first process ended, losing what was still in them: with the
// CPUs busy, most such containers logged nothing.
func TestTheLogHoldsAllOfAnExitedContainersOutput(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("flush", nil)
	pod := e.runPod(t, cfg)
	for i := range runtime.NumCPU() + 1 {
		e.run(t, pod, cfg, fmt.Sprintf("busy%d", i), "while :; do :; done")
	}
	lost := 0
	for i := range 50 {
		name := fmt.Sprintf("echo%d", i)
		id := e.run(t, pod, cfg, name, "echo out; echo err >&2")
		e.waitExited(t, id)
		log := e.logText(t, id)
		if !strings.Contains(log, " stdout F out\n") || !strings.Contains(log, " stderr F err\n") {
			lost++
			t.Logf("%s logged %q", name, log)
		}
	}
	assert.Zero(t, lost, "containers whose output is missing from their log")
}

// TestABidirectionalMountLeavesTheHostsMountsAlone: a privileged container with a
// bidirectional mount (a CSI node plugin's /var/lib/kubelet, the node e2e suite's
// recursive read-only spec) shares its mounts with the host both ways, and starting it
// unmounts nothing of the host's. The init used to detach its old root while the tree
// was shared: the host's mounts under the shared directory went with it.
func TestABidirectionalMountLeavesTheHostsMountsAlone(t *testing.T) {
	e := newPodEnv(t)
	// The kubelet's directory on a systemd host: a shared mount, other pods' volumes
	// mounted under it.
	dir := siteDir(t)
	for _, args := range [][]string{{"--bind", dir, dir}, {"--make-rshared", dir}, {"-t", "tmpfs", "other-pod", dir + "/other"}} {
		if args[0] == "-t" {
			require.NoError(t, os.Mkdir(dir+"/other", 0o755))
		}
		out, err := exec.Command("mount", args...).CombinedOutput()
		require.NoError(t, err, "mount %v: %s", args, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-R", dir).Run() })
	mounted := func(path string) bool {
		data, err := os.ReadFile("/proc/self/mountinfo")
		require.NoError(t, err)
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) > 4 && f[4] == path {
				return true
			}
		}
		return false
	}
	cfg := e.podConfig("bidi", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
	})
	pod := e.runPod(t, cfg)
	run := func(name, script string) *runtimeapi.ContainerStatus {
		id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Command: []string{"/bin/sh", "-c", script}, LogPath: name + ".log",
			Mounts: []*runtimeapi.Mount{{HostPath: dir, ContainerPath: "/mnt",
				Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				Privileged: true, RunAsUser: &runtimeapi.Int64Value{Value: 0}}},
		})
		_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
		require.NoError(t, err)
		st := e.waitExited(t, id)
		assert.Equal(t, int32(0), st.ExitCode, "%s: %s", name, e.logText(t, id))
		return st
	}
	run("mount", "grep -q ' /mnt/other ' /proc/self/mountinfo && mkdir -p /mnt/made && mount -t tmpfs made /mnt/made")
	assert.True(t, mounted(dir+"/other"), "the host's mount under the shared directory is still there")
	assert.True(t, mounted(dir+"/made"), "the container's mount reached the host")
	run("unmount", "grep -q ' /mnt/made ' /proc/self/mountinfo && umount /mnt/made")
	assert.False(t, mounted(dir+"/made"), "the container's unmount reached the host")
	assert.True(t, mounted(dir+"/other"), "the host's mount is still there")
}

func TestStopContainer(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("stop", nil)
	pod := e.runPod(t, cfg)
	handled := e.run(t, pod, cfg, "handled", `trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.1; done`)
	ignored := e.run(t, pod, cfg, "ignored", `trap '' TERM; echo ready; while true; do sleep 0.1; done`)
	for _, id := range []string{handled, ignored} {
		poll(t, func() bool { return strings.Contains(e.logText(t, id), "ready") }, 30*time.Second, 20*time.Millisecond)
	}

	_, err := e.runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: handled, Timeout: 30})
	require.NoError(t, err)
	st := e.status(t, handled)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, st.State)
	assert.Equal(t, int32(0), st.ExitCode, "the SIGTERM handler ran")
	assert.Contains(t, e.logText(t, handled), "got-term")

	// A container that ignores SIGTERM is killed after the timeout.
	_, err = e.runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: ignored, Timeout: 1})
	require.NoError(t, err)
	st = e.status(t, ignored)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, st.State)
	assert.Equal(t, int32(137), st.ExitCode)

	_, err = e.runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: ignored})
	assert.NoError(t, err, "stopping a stopped container succeeds")
	_, err = e.runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: "0123456789ab"})
	assert.NoError(t, err, "stopping an unknown container succeeds")
	_, err = e.runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: ignored})
	require.NoError(t, err)
	_, err = e.runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: ignored})
	assert.NoError(t, err, "removing a removed container succeeds")
}

func TestHostNetworkPod(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("hostnet", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
	})
	pod := e.runPod(t, cfg)
	st, err := e.runtime.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	require.NoError(t, err)
	assert.Nil(t, st.Status.Network, "a host-network pod has no pod IP")
	id := e.run(t, pod, cfg, "c", `hostname; cat /proc/net/dev | grep -c :`)
	assert.Equal(t, int32(0), e.waitExited(t, id).ExitCode)
	hostname, _ := os.Hostname()
	out := lines(e.crictl(t, "logs", id))
	require.Len(t, out, 2)
	assert.Equal(t, hostname, out[0], "host network pods share the host's UTS namespace")
	hostIfs, err := net.Interfaces()
	require.NoError(t, err)
	assert.Equal(t, itoa(len(hostIfs)), out[1], "and its interfaces")
}

func TestSharedPIDNamespace(t *testing.T) {
	e := newPodEnv(t)
	shared := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}
	cfg := e.podConfig("sharedpid", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: shared}
	})
	pod := e.runPod(t, cfg)
	mk := func(name, script string) string {
		id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: e.image},
			Command: []string{"/bin/sh", "-c", script}, LogPath: name + ".log",
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: shared}},
		})
		_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
		require.NoError(t, err)
		return id
	}
	mk("sleeper", "exec sleep 1000")
	looker := mk("looker", `for i in $(seq 100); do ps -o pid,args | grep -q '[s]leep 1000' && break; sleep 0.1; done; ps -o pid,args`)
	assert.Equal(t, int32(0), e.waitExited(t, looker).ExitCode)
	log := e.logText(t, looker)
	assert.Contains(t, log, "sleep 1000", "containers of the pod see each other's processes")
	assert.Regexp(t, `(?m) F +1 .*pod-holder`, log, "the pod's holder is PID 1")
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestHostPortMapping(t *testing.T) {
	e := newPodEnv(t)
	hostPort := int32(freePort(t)) // free on 127.0.0.1 now, so the mapping can have it
	cfg := e.podConfig("ports", func(c *runtimeapi.PodSandboxConfig) {
		c.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 8080, HostPort: hostPort, HostIp: "127.0.0.1"}}
	})
	pod := e.runPod(t, cfg)
	e.run(t, pod, cfg, "server", `mkdir -p /tmp/www && echo via-host-port > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www`)
	url := "http://127.0.0.1:" + strconv.Itoa(int(hostPort)) + "/"
	var body []byte
	poll(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "hostPort %d never answered", hostPort)
	assert.Equal(t, "via-host-port\n", string(body))
}

func TestOOMKilled(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("oom", nil)
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "hog"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		// tail keeps one ever-growing line of zeros in memory.
		Command: []string{"tail", "/dev/zero"},
		Linux:   &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}},
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	st := e.waitExited(t, id)
	assert.Equal(t, "OOMKilled", st.Reason)
	assert.Equal(t, int32(137), st.ExitCode)
}
