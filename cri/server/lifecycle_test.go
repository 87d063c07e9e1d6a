package server

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cri/server/fake"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/testpoll"
)

// eventLog subscribes to a node's container events.
type eventLog struct {
	ch     chan *runtimeapi.ContainerEventResponse
	cancel func()
}

func (n *fakeNode) events(t *testing.T) *eventLog {
	ch, cancel := n.srv.life.events.subscribe()
	t.Cleanup(cancel)
	return &eventLog{ch: ch, cancel: cancel}
}

// next are the events sent since the last call.
func (l *eventLog) next() []runtimeapi.ContainerEventType {
	var out []runtimeapi.ContainerEventType
	for {
		select {
		case ev := <-l.ch:
			out = append(out, ev.GetContainerEventType())
		default:
			return out
		}
	}
}

const (
	evCreated = runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	evStarted = runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	evStopped = runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	evDeleted = runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
)

// startedContainer runs a pod with a started container in it.
func (n *fakeNode) startedContainer(t *testing.T) (podID, id string) {
	t.Helper()
	podID, id, err := n.podWithContainer(t, "", nil, nil)
	require.NoError(t, err)
	_, err = n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	return podID, id
}

func (n *fakeNode) status(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := n.srv.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	require.NoError(t, err)
	return resp.GetStatus()
}

// TestALifeSendsEachEventOnce follows a container from create to removal: each move is
// announced once, in order, and reading its status moves nothing.
func TestALifeSendsEachEventOnce(t *testing.T) {
	n := newFakeNode(t, nil)
	log := n.events(t)
	_, id := n.startedContainer(t)
	assert.Equal(t, []runtimeapi.ContainerEventType{evCreated, evStarted}, log.next())
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, n.status(t, id).GetState())

	n.Engine.Exit(id, 3)
	// Reads report what the record says until the exit watcher records the exit.
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, n.status(t, id).GetState())
	_, err := n.srv.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
	require.NoError(t, err)
	assert.Empty(t, log.next(), "a read RPC sends no event")
	_, err = n.srv.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}})
	require.ErrorIs(t, err, errdefs.ErrFailedPrecondition, "exec in a container whose command ended")
	assert.Empty(t, log.next(), "a refused exec records nothing")

	n.srv.sync(context.Background(), id) // what the exit watcher does as the monitor ends
	st := n.status(t, id)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, st.GetState())
	assert.Equal(t, int32(3), st.GetExitCode())
	assert.Equal(t, "Error", st.GetReason())
	n.srv.sync(context.Background(), id)
	assert.Equal(t, []runtimeapi.ContainerEventType{evStopped}, log.next(), "the exit is announced once")

	_, err = n.srv.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id})
	require.NoError(t, err)
	assert.Nil(t, n.srv.sync(context.Background(), id), "an exit seen after the removal brings nothing back")
	assert.Equal(t, []runtimeapi.ContainerEventType{evDeleted}, log.next())
	n.assertNothingHeld(t)
}

// TestExitsAreRecordedAsTheMonitorSaw checks the reason and code of each way a
// container ends.
func TestExitsAreRecordedAsTheMonitorSaw(t *testing.T) {
	for _, tc := range []struct {
		name   string
		end    func(n *fakeNode, id, cgroup string)
		code   int32
		reason string
	}{
		{"its command succeeds", func(n *fakeNode, id, _ string) { n.Engine.Exit(id, 0) }, 0, "Completed"},
		{"its command fails", func(n *fakeNode, id, _ string) { n.Engine.Exit(id, 2) }, 2, "Error"},
		{"the OOM killer kills it", func(n *fakeNode, id, cg string) { n.Cgroups.OOMKill(cg); n.Engine.Exit(id, 137) }, 137, "OOMKilled"},
		{"its monitor ends with nothing left", func(n *fakeNode, id, _ string) { n.Engine.LoseMonitor(id) }, 255, "Unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newFakeNode(t, nil)
			_, id := n.startedContainer(t)
			c, err := n.srv.recs.container(id)
			require.NoError(t, err)
			tc.end(n, id, c.CgroupPath)
			n.srv.sync(context.Background(), id)
			st := n.status(t, id)
			assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, st.GetState())
			assert.Equal(t, tc.code, st.GetExitCode())
			assert.Equal(t, tc.reason, st.GetReason())
			assert.NotZero(t, st.GetFinishedAt())
		})
	}
}

// TestALostMonitorWithProcessesLeftIsPolledUntilTheyEnd: a container whose monitor was
// killed while its processes run still runs, and is looked at until they end.
func TestALostMonitorWithProcessesLeftIsPolledUntilTheyEnd(t *testing.T) {
	n := newFakeNode(t, nil)
	log := n.events(t)
	_, id := n.startedContainer(t)
	log.next()
	c, err := n.srv.recs.container(id)
	require.NoError(t, err)
	n.Cgroups.SetProcesses(c.CgroupPath, true)
	n.Engine.LoseMonitor(id)
	n.srv.sync(context.Background(), id)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, n.status(t, id).GetState())
	_, polled := n.srv.life.polled.Load(id)
	assert.True(t, polled, "no monitor reports its end: it is polled")
	assert.Empty(t, log.next())

	n.Cgroups.SetProcesses(c.CgroupPath, false)
	testpoll.Until(t, func() bool {
		return n.status(t, id).GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
	}, 10*time.Second, 50*time.Millisecond, "the poll records the exit")
	assert.Equal(t, []runtimeapi.ContainerEventType{evStopped}, log.next())
	assert.Equal(t, "Unknown", n.status(t, id).GetReason())
}

// TestAStartTheDaemonDidNotSaveIsFound: a daemon killed after the monitor released
// the command, before it saved that, finds at its next look that the container runs.
func TestAStartTheDaemonDidNotSaveIsFound(t *testing.T) {
	n := newFakeNode(t, nil)
	_, id, err := n.podWithContainer(t, "", nil, nil)
	require.NoError(t, err)
	log := n.events(t)
	n.Engine.StartUnsaved(id)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_CREATED, n.status(t, id).GetState())
	n.srv.sync(context.Background(), id)
	st := n.status(t, id)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, st.GetState())
	assert.NotZero(t, st.GetStartedAt())
	assert.Equal(t, []runtimeapi.ContainerEventType{evStarted}, log.next())
	_, err = n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.ErrorIs(t, err, errdefs.ErrFailedPrecondition, "a running container cannot start again")
}

// TestAFailedStartIsAStartError checks the record of a start the monitor refused.
func TestAFailedStartIsAStartError(t *testing.T) {
	n := newFakeNode(t, nil)
	_, id, err := n.podWithContainer(t, "", nil, nil)
	require.NoError(t, err)
	n.Faults.Fail("Engine.Start", fake.ErrInjected)
	_, err = n.srv.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.ErrorIs(t, err, fake.ErrInjected)
	st := n.status(t, id)
	assert.Equal(t, runtimeapi.ContainerState_CONTAINER_EXITED, st.GetState())
	assert.Equal(t, int32(128), st.GetExitCode())
	assert.Equal(t, "StartError", st.GetReason())
	assert.Contains(t, st.GetMessage(), "injected failure")
}

// TestAnExitKeepsWhatWasSavedMeanwhile: an exit read before an update of the
// container's resources was saved is laid over the updated record.
func TestAnExitKeepsWhatWasSavedMeanwhile(t *testing.T) {
	n := newFakeNode(t, nil)
	_, id := n.startedContainer(t)
	n.Engine.Exit(id, 1)
	c, err := n.srv.recs.container(id)
	require.NoError(t, err)
	next, m := n.srv.observe(c) // what the exit watcher reads
	require.Equal(t, movedExited, m)
	updated := *c // an UpdateContainerResources saved before the watcher writes
	updated.Cpuset = "1"
	require.NoError(t, n.srv.recs.saveContainer(&updated))
	n.srv.exited(context.Background(), &next)
	got, err := n.srv.recs.container(id)
	require.NoError(t, err)
	assert.Equal(t, containerExited, got.State)
	assert.Equal(t, int32(1), got.ExitCode)
	assert.Equal(t, "1", got.Cpuset, "the update is kept")
	assert.Equal(t, c.StartedAt, got.StartedAt)
}
