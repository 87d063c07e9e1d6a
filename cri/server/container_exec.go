package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Exec returns the streaming URL for an exec in a container.
func (s *Server) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if _, err := s.runningContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.stream.GetExec(req)
}
