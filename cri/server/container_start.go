package server

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// StartContainer releases a created container into its command.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, err := s.recs.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	unlock := s.recs.lock(c.ID)
	defer unlock()
	c = s.refresh(ctx, c.ID)
	if c == nil || c.State != containerCreated {
		state := "removed"
		if c != nil {
			state = c.State
		}
		return nil, fmt.Errorf("container %s is %s; only a created container can start: %w", req.GetContainerId(), state, errdefs.ErrFailedPrecondition)
	}
	updated := *c
	started := time.Now()
	if err := s.engine.Start(ctx, c.ID); err != nil {
		updated.State, updated.ExitCode, updated.Reason, updated.Message = containerExited, 128, "StartError", err.Error()
		updated.FinishedAt = time.Now()
		_ = s.recs.saveContainer(&updated)
		return nil, err
	}
	s.transition.Lock()
	if cur, err := s.recs.container(c.ID); err == nil && cur.State == containerExited {
		updated = *cur // it ran and ended already; the watcher recorded the exit
	} else {
		updated.State = containerRunning
	}
	updated.StartedAt = started
	if at := s.engine.State(c.ID).StartedAt; !at.IsZero() {
		updated.StartedAt = at // the monitor's own time of the exec
	}
	err = s.recs.saveContainer(&updated)
	s.transition.Unlock()
	if err != nil {
		return nil, err
	}
	s.emit(ctx, c.PodID, c.ID, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	return &runtimeapi.StartContainerResponse{}, nil
}
