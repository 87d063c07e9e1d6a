package server

import (
	"context"
	"errors"
	"os"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/logging"
	"github.com/enroot-cri/enroot-cri/ledger"
)

// RemoveContainer kills the container if it runs and removes it: processes, writable
// layer, cgroup, its use of the image mount, and record. Removing an unknown container
// succeeds.
func (s *Server) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	c, err := s.recs.container(req.GetContainerId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, s.removeContainer(ctx, c.ID)
}

func (s *Server) removeContainer(ctx context.Context, id string) error {
	unlock := s.recs.lock(id)
	defer unlock()
	c, err := s.recs.container(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.stopContainer(ctx, id, 0); err != nil {
		return err
	}
	if err := s.engine.Delete(id); err != nil {
		return err
	}
	if cg, err := s.cgroups.Load(c.CgroupPath); err == nil {
		if err := cg.Delete(); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s.removeCgroupParents(c.CgroupPath, c.CgroupParents)
	if _, err := s.ledger.Release(ledger.HolderPod, id); err != nil {
		return err
	}
	for _, v := range append([]string{c.ImageID}, c.ImageVolumes...) {
		if err := s.mounts.Release(v); err != nil {
			return err
		}
	}
	if err := s.removed(ctx, c); err != nil {
		return err
	}
	if err := s.engine.Forget(id); err != nil {
		logging.From(ctx).Warn("remove the monitor's log", "container_id", id, "error", err)
	}
	if pod, err := s.recs.pod(c.PodID); err == nil && len(s.recs.containersOf(pod.ID)) == 0 {
		s.removeCgroupParents(c.CgroupPath, pod.CgroupParents)
	}
	s.recs.locks.Delete(id)
	return nil
}

// removeCgroupParents removes the cgroups above a container's that enroot-cri made
// (parents) and its default parent, where they are empty.
func (s *Server) removeCgroupParents(cgPath string, parents []string) {
	if strings.HasPrefix(cgPath, cgroups.DefaultParent+"/") {
		parents = append([]string{cgroups.DefaultParent}, parents...)
	}
	s.cgroups.RemoveAncestors(parents)
}
