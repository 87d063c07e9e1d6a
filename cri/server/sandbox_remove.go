package server

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// RemovePodSandbox stops the pod if needed, removes its containers, namespaces, mounts
// and record. Removing an unknown pod succeeds.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	pod, err := s.recs.pod(req.GetPodSandboxId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.stopPod(ctx, pod.ID); err != nil {
		return nil, err
	}
	unlock := s.recs.lock(pod.ID)
	defer unlock()
	for _, c := range s.recs.containersOf(pod.ID) {
		if err := s.removeContainer(ctx, c.ID); err != nil {
			return nil, err
		}
	}
	if cur, err := s.recs.pod(pod.ID); err == nil {
		s.cgroups.RemoveAncestors(cur.CgroupParents)
	}
	if err := s.sandboxes.Destroy(&pod.Sandbox); err != nil {
		return nil, err
	}
	if err := s.recs.deletePod(pod.ID); err != nil {
		return nil, err
	}
	s.recs.locks.Delete(pod.ID)
	s.cpu.forget(pod.ID)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}
