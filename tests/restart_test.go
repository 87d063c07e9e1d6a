package tests

import (
	"context"
	"os"
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
		Command: []string{"/bin/sh", "-c", `echo waiting; while [ ! -e /signal/go ]; do sleep 0.1; done; exit 7`},
		Mounts:  []*runtimeapi.Mount{{ContainerPath: "/signal", HostPath: signal, Readonly: true}},
		LogPath: "quitter.log",
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: quitter})
	require.NoError(t, err)
	created := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "never-started"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"true"}})
	require.Eventually(t, func() bool { return strings.Contains(e.logText(t, quitter), "waiting") }, 30*time.Second, 20*time.Millisecond)
	tickerLog := e.status(t, ticker).LogPath

	e.kill() // kill -9: the shims and containers must not notice
	require.NoError(t, os.WriteFile(filepath.Join(signal, "go"), nil, 0o644))
	time.Sleep(time.Second)
	data, err := os.ReadFile(tickerLog)
	require.NoError(t, err)
	before := strings.Count(string(data), "tick")

	e.start(t)
	st := e.status(t, ticker)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, st.State, "still running after the restart")
	require.Eventually(t, func() bool {
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
