package server

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// StartContainer releases a created container into its command.
func (s *Server) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, err := s.recs.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	unlock := s.recs.lock(c.ID)
	defer unlock()
	c = s.sync(ctx, c.ID)
	if c == nil || c.State != containerCreated {
		state := "removed"
		if c != nil {
			state = c.State
		}
		return nil, fmt.Errorf("container %s is %s; only a created container can start: %w", req.GetContainerId(), state, errdefs.ErrFailedPrecondition)
	}
	started := time.Now()
	if err := s.engine.Start(ctx, c.ID); err != nil {
		if serr := s.startFailed(c.ID, err); serr != nil {
			logging.From(ctx).Error("save container record", "container_id", c.ID, "error", serr)
		}
		return nil, err
	}
	if at := s.engine.State(c.ID).StartedAt; !at.IsZero() {
		started = at // the monitor's own time of the exec
	}
	if err := s.started(ctx, c.ID, started, true); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}
