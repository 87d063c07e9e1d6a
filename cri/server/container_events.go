package server

import (
	"sync"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventBuffer is how many events a slow subscriber may fall behind before it misses
// some (the kubelet then relists, as it does on any gap).
const eventBuffer = 1024

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

// GetContainerEvents streams container lifecycle events until the client goes away.
func (s *Server) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	ch, cancel := s.life.events.subscribe()
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
