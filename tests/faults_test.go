package tests

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerInfo is what a verbose ContainerStatus says of a container's processes.
type containerInfo struct {
	Pid        int    `json:"pid"`
	CgroupPath string `json:"cgroupPath"`
	Bundle     string `json:"bundle"`
}

func (e *podEnv) info(t *testing.T, id string) containerInfo {
	t.Helper()
	resp, err := e.runtime.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	require.NoError(t, err)
	var info containerInfo
	require.NoError(t, jsonUnmarshal(resp.Info["info"], &info))
	return info
}

// alive reports whether pid exists and has not ended (a zombie has).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// pgrep lists the processes whose command line matches pattern.
func pgrep(pattern string) []string {
	out, _ := exec.Command("pgrep", "-f", pattern).Output()
	return strings.Fields(string(out))
}

// cgroupDirs lists the directories of cgroup path in every v1 hierarchy that has it.
func cgroupDirs(path string) []string {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", path))
	return dirs
}

// When a container's monitor dies (the shim is killed) its processes keep running:
// the runtime says so, finds them through the container's cgroup, and stop and remove
// end them; the monitor's log stays until the container is removed.
func TestALostMonitorIsFoundThroughItsCgroup(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("orphaned", nil)
	pod := e.runPod(t, cfg)
	signal := t.TempDir()
	require.NoError(t, os.Chmod(signal, 0o777))
	stopped := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "stopped"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", `trap 'echo term > /signal/got; exit 0' TERM; echo up; while true; do sleep 0.1; done`},
		Mounts:  []*runtimeapi.Mount{{ContainerPath: "/signal", HostPath: signal}},
		LogPath: "stopped.log",
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: stopped})
	require.NoError(t, err)
	removed := e.run(t, pod, cfg, "removed", `echo up; exec sleep 1000`)

	infos := map[string]containerInfo{}
	for _, id := range []string{stopped, removed} {
		poll(t, func() bool { return strings.Contains(e.logText(t, id), "up") }, 30*time.Second, 20*time.Millisecond)
		info := e.info(t, id)
		require.NotZero(t, info.Pid)
		shims := pgrep("enroot-cri(-shim)? shim " + info.Bundle + "$")
		require.Len(t, shims, 1, "the container's shim")
		exe, err := os.Readlink("/proc/" + shims[0] + "/exe")
		require.NoError(t, err)
		assert.Equal(t, "enroot-cri-shim", filepath.Base(exe), "the monitor is the small binary beside the daemon's")
		require.NoError(t, exec.Command("kill", "-9", shims[0]).Run())
		poll(t, func() bool { return len(pgrep("enroot-cri(-shim)? shim "+info.Bundle+"$")) == 0 }, 10*time.Second, 10*time.Millisecond)
		infos[id] = info
	}
	monitorLog := func(id string) string { return filepath.Join(e.dir, "state", "monitors", id+".log") }

	for _, id := range []string{stopped, removed} {
		st := e.status(t, id)
		assert.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, st.State, "its processes still run")
		assert.True(t, alive(infos[id].Pid), "the container's first process outlived its monitor")
		assert.FileExists(t, monitorLog(id))
	}
	cs, err := e.runtime.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	require.NoError(t, err)
	assert.Len(t, cs.Containers, 2, "both listed as running")

	// Stop sends the stop signal to the first process, found through the cgroup.
	_, err = e.runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: stopped, Timeout: 20})
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(signal, "got"))
	require.NoError(t, err, "the first process got the stop signal")
	assert.Equal(t, "term\n", string(got))
	st := e.status(t, stopped)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, st.State)
	assert.Equal(t, int32(255), st.ExitCode)
	assert.Equal(t, "Unknown", st.Reason)
	assert.Contains(t, st.Message, monitorLog(stopped), "the message says where the monitor's log is")
	assert.False(t, alive(infos[stopped].Pid))
	assert.FileExists(t, monitorLog(stopped), "kept until the container is removed")

	// Remove, without a stop first, kills what runs.
	_, err = e.runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: removed})
	require.NoError(t, err)
	assert.False(t, alive(infos[removed].Pid), "remove killed the orphaned process")
	assert.Empty(t, cgroupDirs(infos[removed].CgroupPath))
	assert.NoFileExists(t, monitorLog(removed))

	_, err = e.runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: stopped})
	require.NoError(t, err)
	assert.Empty(t, cgroupDirs(infos[stopped].CgroupPath))
	assert.NoFileExists(t, monitorLog(stopped))
}

// A container that exits while processes it left behind still run in its cgroup (its
// init shares the pod's PID namespace) is removed with them.
func TestRemoveKillsWhatAnExitedContainerLeft(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("leftovers", func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD}}
	})
	pod := e.runPod(t, cfg)
	id := e.run(t, pod, cfg, "parent", `sleep 1000 >/dev/null 2>&1 & echo started; exit 3`)
	st := e.waitExited(t, id)
	require.Equal(t, int32(3), st.ExitCode)
	info := e.info(t, id)
	pids, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", info.CgroupPath, "cgroup.procs"))
	require.NoError(t, err)
	left := strings.Fields(string(pids))
	require.NotEmpty(t, left, "the background sleep outlived the container's first process")

	_, err = e.runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id})
	require.NoError(t, err)
	assert.Empty(t, cgroupDirs(info.CgroupPath))
	for _, p := range left {
		_, err := os.Stat("/proc/" + p)
		assert.ErrorIs(t, err, os.ErrNotExist, "process %s left behind", p)
	}
}

// A daemon killed in the middle of CreateContainer (here while an Enroot hook of the
// container runs) leaves a cgroup, a bundle and processes no record owns; its next
// start removes them all.
func TestADaemonKilledDuringCreateLeavesNothing(t *testing.T) {
	site := siteDir(t)
	hook := "10-hold-" + strings.ToLower(t.Name()) + ".sh"
	writeFiles(t, site, map[string]string{"hooks.d/" + hook: "#!/bin/sh\n# holds the create until the daemon is killed\ni=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"})
	e := newPodEnvWith(t, fmt.Sprintf("[runtimes.holding]\nkind = \"enroot\"\nenroot_config_dir = %q\n", site))
	cfg := e.podConfig("interrupted", nil)
	pod := e.runPodWith(t, cfg, "holding")
	before, _ := filepath.Glob("/sys/fs/cgroup/*/enroot-cri/*")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := e.runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: cfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
				Image: &runtimeapi.ImageSpec{Image: e.image}, Command: []string{"true"}}})
		done <- err
	}()
	poll(t, func() bool { return len(pgrep(hook)) > 0 }, 30*time.Second, 10*time.Millisecond, "the hook runs")
	after, _ := filepath.Glob("/sys/fs/cgroup/*/enroot-cri/*")
	var made []string
	for _, d := range after {
		if !slices.Contains(before, d) {
			made = append(made, d)
		}
	}
	require.NotEmpty(t, made, "the create made the container's cgroup")

	e.kill()
	require.Error(t, <-done, "the create did not finish")
	require.NotEmpty(t, pgrep(hook), "the interrupted create's processes outlive the daemon")
	e.start(t)

	for _, d := range made {
		assert.NoDirExists(t, d, "the interrupted create's cgroup")
	}
	assert.Empty(t, pgrep(hook), "the interrupted create's processes")
	for _, d := range []string{"state/containers", "root/containers", "state/monitors", "state/pending"} {
		entries, _ := os.ReadDir(filepath.Join(e.dir, d))
		assert.Empty(t, entries, d)
	}
	cs, err := e.runtime.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	require.NoError(t, err)
	assert.Empty(t, cs.Containers)
}

// A daemon killed during StartContainer after the monitor released the command, before
// it saved the start, finds the container running when it restarts (the soak met it:
// the retried start failed "already started" and the running container was reported
// EXITED). Here the kill comes first and the test sends the monitor its "start", as the
// daemon did.
func TestAStartCutOffByAKillIsFoundRunning(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("cut-off-start", nil)
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
		Image: &runtimeapi.ImageSpec{Image: e.image}, Command: []string{"sleep", "1000"}})
	info := e.info(t, id)
	e.kill()
	before := time.Now()
	// The bundle's path is longer than a socket address may be: dial through a
	// descriptor of the directory.
	dir, err := os.Open(info.Bundle)
	require.NoError(t, err)
	defer dir.Close()
	controlStart := func() string {
		conn, err := net.Dial("unix", fmt.Sprintf("/proc/self/fd/%d/control.sock", dir.Fd()))
		if err != nil {
			return err.Error()
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("start\n")); err != nil {
			return err.Error()
		}
		reply, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(reply)
	}
	first, second := controlStart(), controlStart()
	e.start(t)
	require.Equal(t, "ok", first)
	require.Equal(t, "ok", second, "a second start gets the first one's answer")

	st := e.status(t, id)
	require.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, st.State, "%s %s", st.Reason, st.Message)
	assert.GreaterOrEqual(t, st.StartedAt, before.UnixNano(), "started when the monitor released it")
	assert.True(t, alive(e.info(t, id).Pid))
	_, err = e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	_, err = e.runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
	require.NoError(t, err)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, e.status(t, id).State)
}

// The cgroup parent a pod's first container made goes with the pod's last container,
// whichever is removed last.
func TestPodCgroupParentGoesWithItsLastContainer(t *testing.T) {
	e := newPodEnv(t)
	top := "/ecri-" + strings.ToLower(t.Name())
	parent := top + "/pod-parent"
	cfg := e.podConfig("parented", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = parent })
	pod := e.runPod(t, cfg)
	first := e.run(t, pod, cfg, "first", "exec sleep 1000")
	second := e.run(t, pod, cfg, "second", "exec sleep 1000")
	require.NotEmpty(t, cgroupDirs(parent))
	t.Cleanup(func() {
		for _, d := range append(cgroupDirs(parent), cgroupDirs(top)...) {
			_ = syscall.Rmdir(d)
		}
	})

	_, err := e.runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: first})
	require.NoError(t, err)
	assert.NotEmpty(t, cgroupDirs(parent), "the second container still lives in it")
	_, err = e.runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: second})
	require.NoError(t, err)
	assert.Empty(t, cgroupDirs(parent), "the pod's cgroup parent, made by the first container")
	assert.Empty(t, cgroupDirs(top))
}

// Concurrent RunPodSandbox calls with the same name: one pod, the others AlreadyExists
// naming it.
func TestConcurrentPodsOfOneNameMakeOnePod(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("twin", nil)
	const calls = 4
	errs := make(chan error, calls)
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			_, err := e.runtime.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		if err == nil {
			ok++
			continue
		}
		assert.Equal(t, codes.AlreadyExists, status.Code(err), "%v", err)
		assert.ErrorContains(t, err, "pod name test/twin (uid twin-uid, attempt 0) is already used by pod sandbox ")
	}
	assert.Equal(t, 1, ok)
	pods, err := e.runtime.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{})
	require.NoError(t, err)
	assert.Len(t, pods.Items, 1)
}
