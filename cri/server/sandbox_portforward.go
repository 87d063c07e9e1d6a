package server

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// PortForward returns the streaming URL to forward ports into a pod.
func (s *Server) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	pod, err := s.recs.pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if pod.State != podReady {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", pod.ID, errdefs.ErrFailedPrecondition)
	}
	return s.stream.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: pod.ID, Port: req.GetPort()})
}
