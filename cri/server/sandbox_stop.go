package server

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// StopPodSandbox kills the pod's containers, detaches it from the network and ends its
// PID holder. Stopping an unknown or stopped pod succeeds.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	pod, err := s.recs.pod(req.GetPodSandboxId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, s.stopPod(ctx, pod.ID)
}

func (s *Server) stopPod(ctx context.Context, id string) error {
	unlock := s.recs.lock(id)
	defer unlock()
	pod, err := s.recs.pod(id)
	if err != nil {
		return err
	}
	for _, c := range s.recs.containersOf(id) {
		unlockC := s.recs.lock(c.ID)
		err := s.stopContainer(ctx, c.ID, 0)
		unlockC()
		if err != nil {
			return err
		}
	}
	updated := *pod
	if pod.Networked {
		if err := s.network.Teardown(ctx, networkPod(pod)); err != nil {
			return err
		}
		updated.Networked = false
	}
	s.sandboxes.StopHolder(&pod.Sandbox)
	if pod.State == podNotReady && !pod.Networked {
		return nil
	}
	updated.State = podNotReady
	if err := s.recs.savePod(&updated); err != nil {
		return err
	}
	logging.From(ctx).Info("pod sandbox stopped", "pod_id", id)
	return nil
}
