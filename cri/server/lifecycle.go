package server

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/logging"
	"github.com/enroot-cri/enroot-cri/internal/pidwatch"
)

// A container's life, and the one place its record changes state:
//
//	CreateContainer ─▶ created ─StartContainer─▶ running ─its command ends─▶ exited ─RemoveContainer─▶ gone
//	                      └──────── killed or failed before its command ran ──────▶ exited
//
// Each move is saved, then announced (CREATED, STARTED, STOPPED, DELETED events),
// under lifecycle.mu, so that a move and a removal never interleave: an exit is never
// recorded for a removed container, nor announced twice. Calls on one container are
// serialised by its lock in records (the RPC handlers take it); exits come from the
// exit watcher, which holds no per-container lock and so goes through exited.
//
// Exits are pushed: each container's monitor is watched through a pidfd, and its end
// makes the watcher look at what the monitor recorded (sync). A container whose monitor
// ended while its processes run cannot be watched: it is looked at every exitPoll. Read
// RPCs (ContainerStatus, ListContainers, the stats) only read records.
type lifecycle struct {
	mu sync.Mutex
	// exits reports each watched container's monitor as it ends; polled are the
	// containers it cannot report.
	exits  *pidwatch.Watcher
	polled sync.Map
	// lostMonitors are the containers whose ended monitor was reported.
	lostMonitors sync.Map
	events       events
}

// exitPoll is how often the containers no pidfd reports are checked for an exit.
const exitPoll = time.Second

// move is what a container's monitor shows happened since its record was saved.
type move int

const (
	stayed move = iota
	// movedStarted: a start cut off by a daemon crash after the monitor released the
	// command, before the record was saved.
	movedStarted
	movedExited
	// lostMonitor: the monitor ended while the container's processes run; the
	// container still runs, and stop and remove kill it through its cgroup.
	lostMonitor
)

// observe reads what a created or running container's monitor (without one, its
// cgroup) shows, and returns the record that says it with the move. It changes nothing.
func (s *Server) observe(c *containerRecord) (containerRecord, move) {
	next := *c
	if c.State == containerExited {
		return next, stayed
	}
	st := s.engine.State(c.ID)
	startedUnsaved := c.State == containerCreated && !st.StartedAt.IsZero()
	if startedUnsaved {
		next.StartedAt = st.StartedAt
	}
	switch {
	case st.Exit != nil:
		next.ExitCode, next.FinishedAt = int32(st.Exit.Code), st.Exit.FinishedAt
		next.Reason = "Completed"
		if st.Exit.Code != 0 {
			next.Reason = "Error"
		}
		if cg, err := s.cgroups.Load(c.CgroupPath); err == nil && cg.OOMKills() > 0 {
			next.Reason = "OOMKilled"
		}
	case !st.ShimAlive:
		if cg, err := s.cgroups.Load(c.CgroupPath); err == nil && cg.HasProcesses() {
			return *c, lostMonitor
		}
		next.ExitCode, next.FinishedAt, next.Reason = 255, time.Now(), "Unknown"
		next.Message = s.lostMonitorMessage(c.ID)
	case startedUnsaved:
		next.State = containerRunning
		return next, movedStarted
	default:
		return next, stayed
	}
	next.State = containerExited
	return next, movedExited
}

// runs reports whether the container's command runs now, by its record and its
// monitor, without saving what it finds.
func (s *Server) runs(c *containerRecord) bool {
	next, _ := s.observe(c)
	return next.State == containerRunning
}

// sync brings a container's record up to date with its monitor and announces the
// move. It returns the current record, nil when the container no longer exists.
func (s *Server) sync(ctx context.Context, id string) *containerRecord {
	c, err := s.recs.container(id)
	if err != nil {
		return nil
	}
	next, m := s.observe(c)
	switch m {
	case lostMonitor:
		s.noteLostMonitor(ctx, c, true)
		s.life.polled.Store(id, true) // no monitor is left to report its end
		return c
	case movedStarted:
		if err := s.started(ctx, id, next.StartedAt, false); err != nil {
			logging.From(ctx).Error("save container record", "container_id", id, "error", err)
			return c
		}
	case movedExited:
		if next.Reason == "Unknown" {
			s.noteLostMonitor(ctx, c, false)
		}
		s.exited(ctx, &next)
	default:
		return c
	}
	if cur, err := s.recs.container(id); err == nil {
		return cur
	}
	return nil
}

// created saves a new container's record and announces it.
func (s *Server) created(ctx context.Context, rec *containerRecord) error {
	s.life.mu.Lock()
	err := s.recs.saveContainer(rec)
	s.life.mu.Unlock()
	if err != nil {
		return err
	}
	s.emit(ctx, rec.PodID, rec.ID, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	return nil
}

// started records that a created container's command runs since at. After the
// container's own StartContainer (byStart), a container whose exit was recorded
// meanwhile (it ran and ended already) keeps its exit, gets the start time and its
// STARTED event; otherwise only a created one moves.
func (s *Server) started(ctx context.Context, id string, at time.Time, byStart bool) error {
	s.life.mu.Lock()
	cur, err := s.recs.container(id)
	moves := err == nil && (cur.State == containerCreated || (byStart && cur.State == containerExited))
	if moves {
		updated := *cur
		if cur.State == containerCreated {
			updated.State = containerRunning
		}
		updated.StartedAt = at
		err = s.recs.saveContainer(&updated)
	}
	s.life.mu.Unlock()
	if err != nil || !moves {
		return err
	}
	s.emit(ctx, cur.PodID, id, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return nil
}

// startFailed records that a created container's command could not be run.
func (s *Server) startFailed(id string, cause error) error {
	s.life.mu.Lock()
	defer s.life.mu.Unlock()
	cur, err := s.recs.container(id)
	if err != nil || cur.State != containerCreated {
		return err
	}
	updated := *cur
	updated.State, updated.ExitCode, updated.Reason, updated.Message = containerExited, 128, "StartError", cause.Error()
	updated.FinishedAt = time.Now()
	return s.recs.saveContainer(&updated)
}

// exited records a container's exit (next, from observe) and announces it; a container
// removed or recorded exited meanwhile is left as it is. The exit is laid over the
// record as it is now: what a call saved since observe read it (a start, new
// resources) stays.
func (s *Server) exited(ctx context.Context, next *containerRecord) {
	s.life.mu.Lock()
	cur, err := s.recs.container(next.ID)
	if err != nil || cur.State == containerExited {
		s.life.mu.Unlock()
		return
	}
	updated := *cur
	updated.State, updated.ExitCode, updated.FinishedAt = containerExited, next.ExitCode, next.FinishedAt
	updated.Reason, updated.Message = next.Reason, next.Message
	if updated.StartedAt.IsZero() {
		updated.StartedAt = next.StartedAt
	}
	err = s.recs.saveContainer(&updated)
	s.life.mu.Unlock()
	if err != nil {
		logging.From(ctx).Error("save container record", "container_id", next.ID, "error", err)
	}
	s.emit(ctx, next.PodID, next.ID, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
}

// removed forgets a container whose processes, bundle and cgroup are gone, and
// announces it.
func (s *Server) removed(ctx context.Context, c *containerRecord) error {
	s.life.mu.Lock()
	err := s.recs.deleteContainer(c.ID)
	s.life.mu.Unlock()
	if err != nil {
		return err
	}
	s.life.exits.Remove(c.ID)
	s.life.polled.Delete(c.ID)
	s.life.lostMonitors.Delete(c.ID)
	s.cpu.forget(c.ID)
	s.emit(ctx, c.PodID, c.ID, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// watchExits records each container's exit as its monitor ends; the containers no
// pidfd can report are looked at every exitPoll until they have exited.
func (s *Server) watchExits(ctx context.Context) {
	go s.life.exits.Run(ctx, func(id string) { s.sync(ctx, id) })
	t := time.NewTicker(exitPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.life.polled.Range(func(key, _ any) bool {
			if c := s.sync(ctx, key.(string)); c == nil || c.State == containerExited {
				s.life.polled.Delete(key)
			}
			return true
		})
	}
}

// watch has the exit watcher record the container's exit as soon as its monitor ends;
// a monitor already gone is looked at now.
func (s *Server) watch(ctx context.Context, id string) {
	err := s.engine.WatchShim(s.life.exits, id)
	if err == nil {
		return
	}
	if !errors.Is(err, pidwatch.ErrGone) {
		logging.From(ctx).Warn("cannot watch the container's monitor; polling it", "container_id", id, "error", err)
		s.life.polled.Store(id, true)
		return
	}
	s.sync(ctx, id)
}

// lostMonitorMessage explains an exit no monitor recorded, naming the monitor's log
// when there is one (there is none after a reboot).
func (s *Server) lostMonitorMessage(id string) string {
	log := s.engine.MonitorLog(id)
	if _, err := os.Stat(log); err != nil {
		return "the container's monitor ended without recording an exit status (was the node restarted?)"
	}
	return "the container's monitor ended without recording an exit status; its log is " + log
}

// noteLostMonitor reports, once per container, a monitor that ended without recording
// an exit: with the container's processes still running, or with none left.
func (s *Server) noteLostMonitor(ctx context.Context, c *containerRecord, running bool) {
	if _, seen := s.life.lostMonitors.LoadOrStore(c.ID, true); seen {
		return
	}
	s.metrics.Monitor("lost")
	msg := "the container's monitor ended without recording an exit status; the container is reported exited"
	if running {
		msg = "the container's monitor ended while its processes run; stop or remove kills them through its cgroup"
	}
	logging.From(ctx).Warn(msg, "container_id", c.ID, "pod_id", c.PodID, "cgroup", c.CgroupPath, "monitor_log", s.engine.MonitorLog(c.ID))
}

// emit publishes an event about a container with its pod's current status.
func (s *Server) emit(ctx context.Context, podID, containerID string, t runtimeapi.ContainerEventType) {
	ev := &runtimeapi.ContainerEventResponse{ContainerId: containerID, ContainerEventType: t, CreatedAt: time.Now().UnixNano()}
	if pod, err := s.recs.pod(podID); err == nil {
		ev.PodSandboxStatus = podStatus(pod)
	}
	for _, c := range s.recs.containersOf(podID) {
		ev.ContainersStatuses = append(ev.ContainersStatuses, containerStatus(c))
	}
	if n := s.life.events.publish(ev); n > 0 {
		logging.From(ctx).Warn("container event dropped for slow subscribers", "container_id", containerID, "subscribers", n)
	}
}
