package server

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cri/server/fake"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

func TestUpdateContainerResources(t *testing.T) {
	n := newFakeNode(t, nil)
	_, id := n.startedContainer(t)
	c, err := n.srv.recs.container(id)
	require.NoError(t, err)
	update := func(r *runtimeapi.LinuxContainerResources) error {
		_, err := n.srv.UpdateContainerResources(context.Background(), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: r})
		return err
	}

	require.NoError(t, update(&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuPeriod: 100000, CpuQuota: 20000}))
	cg := n.Cgroups.Get(c.CgroupPath)
	assert.Equal(t, int64(128<<20), *cg.Resources.Memory.Limit)
	assert.Equal(t, int64(20000), *cg.Resources.CPU.Quota)
	assert.Equal(t, int64(128<<20), n.status(t, id).GetResources().GetLinux().GetMemoryLimitInBytes(), "the status shows the new limits")

	err = update(&runtimeapi.LinuxContainerResources{CpuQuota: 10})
	require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
	assert.ErrorContains(t, err, "linux.cpu_quota")

	// The kernel refuses a limit (below what the container uses): InvalidArgument, and
	// the record keeps what the cgroup has.
	n.Faults.Fail("Cgroup.Update", fake.ErrInjected)
	err = update(&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 4096})
	require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
	assert.Equal(t, int64(128<<20), n.status(t, id).GetResources().GetLinux().GetMemoryLimitInBytes())
	n.Faults.Clear()

	n.Engine.Exit(id, 0)
	n.srv.sync(context.Background(), id)
	err = update(&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20})
	require.ErrorIs(t, err, errdefs.ErrFailedPrecondition, "an exited container's resources are not changed")
	require.ErrorIs(t, update(nil), errdefs.ErrInvalidArgument)
}
