package server

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cri/server/fake"
)

// TestRemoveContainer: a running container is killed and all it held given back; a
// removal that fails keeps the record, so that the kubelet's retry finishes it; a
// second removal is nothing.
func TestRemoveContainer(t *testing.T) {
	n := newFakeNode(t, nil)
	_, id := n.startedContainer(t)
	c, err := n.srv.recs.container(id)
	require.NoError(t, err)
	n.Cgroups.SetProcesses(c.CgroupPath, true)
	remove := func() error {
		_, err := n.srv.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id})
		return err
	}

	n.Faults.Fail("Engine.Delete", fake.ErrInjected)
	require.ErrorIs(t, remove(), fake.ErrInjected)
	_, err = n.srv.recs.container(id)
	require.NoError(t, err, "the record stays for the retry")
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, n.status(t, id).GetState(), "it was stopped first")
	assert.False(t, n.Cgroups.Get(c.CgroupPath).HasProcesses(), "what ran in its cgroup was killed")

	n.Faults.Clear()
	require.NoError(t, remove())
	n.assertNothingHeld(t)
	require.NoError(t, remove(), "removing a removed container is fine")
}
