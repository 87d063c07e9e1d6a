package server

import (
	"context"
	"errors"
	"os"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/mig"
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
	if cg, err := cgroups.Load(c.CgroupPath); err == nil {
		if err := cg.Delete(); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	parents := c.CgroupParents
	if strings.HasPrefix(c.CgroupPath, cgroups.DefaultParent+"/") {
		parents = append([]string{cgroups.DefaultParent}, parents...)
	}
	cgroups.RemoveAncestors(parents)
	if _, err := s.ledger.Release(mig.HolderPod, id); err != nil {
		return err
	}
	for _, v := range append([]string{c.ImageID}, c.ImageVolumes...) {
		if err := s.mounts.Release(v); err != nil {
			return err
		}
	}
	s.transition.Lock()
	err = s.recs.deleteContainer(id)
	s.transition.Unlock()
	if err != nil {
		return err
	}
	s.emit(ctx, c.PodID, id, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	s.recs.locks.Delete(id)
	return nil
}
