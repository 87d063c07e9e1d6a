package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestContainersOutliveADaemonKill(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("survivor", nil)
	pod := e.runPod(t, cfg)
	ticker := e.run(t, pod, cfg, "ticker", `i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done`)
	signal := t.TempDir() // a host directory the quitter watches through a CRI mount
	require.NoError(t, os.Chmod(signal, 0o777))
	quitter := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "quitter"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", `echo waiting; while [ ! -e /signal/go ]; do sleep 0.1; done; echo quitting; exit 7`},
		Mounts:  []*runtimeapi.Mount{{ContainerPath: "/signal", HostPath: signal, Readonly: true}},
		LogPath: "quitter.log",
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: quitter})
	require.NoError(t, err)
	created := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "never-started"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"true"}})
	poll(t, func() bool { return strings.Contains(e.logText(t, quitter), "waiting") }, 30*time.Second, 20*time.Millisecond)
	tickerLog := e.status(t, ticker).LogPath

	ticks := func() int {
		data, err := os.ReadFile(tickerLog)
		require.NoError(t, err)
		return strings.Count(string(data), "tick")
	}
	e.kill() // kill -9: the shims and containers must not notice
	atKill := ticks()
	require.NoError(t, os.WriteFile(filepath.Join(signal, "go"), nil, 0o644))
	// While the daemon is down the ticker goes on logging and the quitter ends.
	poll(t, func() bool { return ticks() >= atKill+3 }, 30*time.Second, 20*time.Millisecond, "the ticker logs without the daemon")
	quitterLog := filepath.Join(cfg.LogDirectory, "quitter.log")
	poll(t, func() bool {
		data, err := os.ReadFile(quitterLog)
		require.NoError(t, err)
		return strings.Contains(string(data), "quitting")
	}, 30*time.Second, 20*time.Millisecond, "the quitter quits without the daemon")
	before := ticks()

	e.start(t)
	st := e.status(t, ticker)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, st.State, "still running after the restart")
	poll(t, func() bool {
		return strings.Count(e.logText(t, ticker), "tick") > before
	}, 10*time.Second, 50*time.Millisecond, "still logging after the restart")

	qst := e.waitExited(t, quitter)
	assert.Equal(t, int32(7), qst.ExitCode, "an exit while the daemon was down is reported with its code")
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_CREATED, e.status(t, created).State)

	pods, err := e.runtime.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{})
	require.NoError(t, err)
	require.Len(t, pods.Items, 1)
	assert.Equal(t, runtimeapi.PodSandboxState_SANDBOX_READY, pods.Items[0].State)
}

func TestAfterARebootEverythingIsExited(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("rebooted", nil)
	pod := e.runPod(t, cfg)
	running := e.run(t, pod, cfg, "running", `exec sleep 1000`)
	poll(t, func() bool {
		return e.status(t, running).State == runtimeapi.ContainerState_CONTAINER_RUNNING
	}, 10*time.Second, 20*time.Millisecond)

	e.kill()
	simulateReboot(t, e)
	e.start(t)

	st := e.status(t, running)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, st.State)
	assert.Equal(t, "Unknown", st.Reason)
	ps, err := e.runtime.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
	require.NoError(t, err)
	assert.Equal(t, runtimeapi.PodSandboxState_SANDBOX_NOTREADY, ps.Status.State)
	// The cleanup removes the pod: its CNI address is released without a namespace.
}

// simulateReboot does what a reboot does to the daemon's volatile state: every process
// of the test's containers ends, every mount goes, and the state directory is empty.
func simulateReboot(t *testing.T, e *podEnv) {
	t.Helper()
	_ = exec.Command("pkill", "-9", "-f", "enroot-cri(-shim)? (shim|init) "+e.dir).Run()
	// What is left in this daemon's containers' cgroups, and nothing of any other's.
	records, _ := filepath.Glob(filepath.Join(e.dir, "*", "records", "containers", "*.json"))
	var procFiles []string
	for _, r := range records {
		var rec struct {
			CgroupPath string `json:"cgroup_path"`
		}
		data, err := os.ReadFile(r)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &rec))
		require.NotEmpty(t, rec.CgroupPath, r)
		procFiles = append(procFiles, filepath.Join("/sys/fs/cgroup/freezer", rec.CgroupPath, "cgroup.procs"))
	}
	require.NotEmpty(t, procFiles, "the test's container records")
	poll(t, func() bool {
		left := 0
		for _, procs := range procFiles {
			data, _ := os.ReadFile(procs)
			for _, pid := range strings.Fields(string(data)) {
				left++
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		return left == 0
	}, 10*time.Second, 20*time.Millisecond, "the containers' processes are gone")
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var mounts []string
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], filepath.Join(e.dir, "state")) {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		require.NoError(t, exec.Command("umount", "-l", mounts[i]).Run(), mounts[i])
	}
	require.NoError(t, os.RemoveAll(filepath.Join(e.dir, "state")))
}
