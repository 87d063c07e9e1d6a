package server

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// eventBuffer is how many events a slow subscriber may fall behind before it misses
// some (the kubelet then relists, as it does on any gap).
const eventBuffer = 1024

// exitPoll is how often running containers are checked for an exit, so that a
// STOPPED event follows an exit promptly.
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

// watchExits refreshes created and running containers periodically, so that exits
// are recorded (and announced) even when nobody asks for a status.
func (s *Server) watchExits(ctx context.Context) {
	t := time.NewTicker(exitPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, c := range s.recs.allContainers() {
			if c.State != containerExited {
				s.refresh(ctx, c.ID)
			}
		}
	}
}
