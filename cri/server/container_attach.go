package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Attach returns the streaming URL to attach to a container's stdio.
func (s *Server) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if _, err := s.runningContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.stream.GetAttach(req)
}
