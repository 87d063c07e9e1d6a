package server

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// CheckpointContainer is not supported: Enroot has no checkpoint/restore, and neither
// does this runtime.
func (s *Server) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, fmt.Errorf("checkpointing containers is not supported by enroot-cri (no checkpoint/restore engine): %w", errdefs.ErrUnimplemented)
}
