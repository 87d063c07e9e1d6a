package server

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestStopSendsTheImagesStopSignal: a stop with a timeout sends the image's stop
// signal first; the exit is recorded before StopContainer returns.
func TestStopSendsTheImagesStopSignal(t *testing.T) {
	n := newFakeNode(t, nil)
	_, id := n.startedContainer(t)
	_, err := n.srv.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10})
	require.NoError(t, err)
	st := n.status(t, id)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, st.GetState())
	assert.Equal(t, int32(128+15), st.GetExitCode(), "SIGTERM, the default stop signal")
	_, err = n.srv.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10})
	require.NoError(t, err, "stopping a stopped container is fine")
	_, err = n.srv.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: "no-such-container"})
	require.NoError(t, err, "stopping an unknown container succeeds, as the kubelet expects of a removed one")
}

func TestStopSignal(t *testing.T) {
	for name, want := range map[string]int{"": 15, "SIGQUIT": 3, "quit": 3, "9": 9, "SIGNOPE": 15} {
		assert.Equal(t, want, int(stopSignal(name)), name)
	}
}
