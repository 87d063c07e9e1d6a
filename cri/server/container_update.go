package server

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// UpdateContainerResources applies new CPU and memory settings to a container's cgroup
// and records them for ContainerStatus.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if req.GetLinux() == nil {
		return nil, fmt.Errorf("linux resources are missing: %w", errdefs.ErrInvalidArgument)
	}
	if err := validateResources("linux", req.GetLinux()); err != nil {
		return nil, err
	}
	c, err := s.recs.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	unlock := s.recs.lock(c.ID)
	defer unlock()
	if c = s.sync(ctx, c.ID); c == nil || c.State == containerExited {
		return nil, fmt.Errorf("container %s has exited: %w", req.GetContainerId(), errdefs.ErrFailedPrecondition)
	}
	cg, err := s.cgroups.Load(c.CgroupPath)
	if err != nil {
		return nil, err
	}
	res, autoCPUs := s.confinement(req.GetLinux(), false, nil, c.ID)
	if err := cg.Update(res); err != nil {
		return nil, errdefs.WithKind(err, errdefs.ErrInvalidArgument)
	}
	updated := *c
	updated.Cpuset, updated.CpusetAuto = cpuset(res), autoCPUs
	cfg := proto.Clone(c.config).(*runtimeapi.ContainerConfig)
	if cfg.Linux == nil {
		cfg.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	cfg.Linux.Resources = req.GetLinux()
	updated.config = cfg
	if updated.Config, err = protojson.Marshal(cfg); err != nil {
		return nil, fmt.Errorf("encode container config: %w", err)
	}
	if err := s.recs.saveContainer(&updated); err != nil {
		return nil, err
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}
