package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/logging"
	"github.com/enroot-cri/enroot-cri/internal/pidwatch"
)

// eventBuffer is how many events a slow subscriber may fall behind before it misses
// some (the kubelet then relists, as it does on any gap).
const eventBuffer = 1024

// exitPoll is how often the containers no pidfd reports are checked for an exit.
const exitPoll = time.Second

// events fans container lifecycle events out to GetContainerEvents subscribers.
type events struct {
	mu   sync.Mutex
	subs map[chan *runtimeapi.ContainerEventResponse]struct{}
}

func (e *events) subscribe() (chan *runtimeapi.ContainerEventResponse, func()) {
	ch := make(chan *runtimeapi.ContainerEventResponse, eventBuffer)
	e.mu.Lock()
	if e.subs == nil {
		e.subs = map[chan *runtimeapi.ContainerEventResponse]struct{}{}
	}
	e.subs[ch] = struct{}{}
	e.mu.Unlock()
	return ch, func() {
		e.mu.Lock()
		delete(e.subs, ch)
		e.mu.Unlock()
	}
}

func (e *events) publish(ev *runtimeapi.ContainerEventResponse) (dropped int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.subs {
		select {
		case ch <- ev:
		default:
			dropped++
		}
	}
	return dropped
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
	if n := s.events.publish(ev); n > 0 {
		logging.From(ctx).Warn("container event dropped for slow subscribers", "container_id", containerID, "subscribers", n)
	}
}

// GetContainerEvents streams container lifecycle events until the client goes away.
func (s *Server) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	ch, cancel := s.events.subscribe()
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// watchExits records each container's exit as its shim ends (pidfds, one epoll set)
// and announces it; containers no pidfd can report (a monitor that ended while the
// container's processes run) are looked at every exitPoll until they have exited.
func (s *Server) watchExits(ctx context.Context) {
	go s.exits.Run(ctx, func(id string) { s.refresh(ctx, id) })
	t := time.NewTicker(exitPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.polled.Range(func(key, _ any) bool {
			if c := s.refresh(ctx, key.(string)); c == nil || c.State == containerExited {
				s.polled.Delete(key)
			}
			return true
		})
	}
}

// watch has the exit watcher record the container's exit as soon as its shim ends;
// a shim already gone is looked at now.
func (s *Server) watch(ctx context.Context, id string) {
	err := s.engine.WatchShim(s.exits, id)
	if err == nil {
		return
	}
	if !errors.Is(err, pidwatch.ErrGone) {
		logging.From(ctx).Warn("cannot watch the container's monitor; polling it", "container_id", id, "error", err)
		s.polled.Store(id, true)
		return
	}
	s.refresh(ctx, id)
}
