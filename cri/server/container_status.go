package server

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStatus reports a container's state, times, exit code and reason.
func (s *Server) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.recs.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: containerStatus(c)}
	if req.GetVerbose() {
		info, err := json.Marshal(map[string]any{
			"pid": s.engine.State(c.ID).InitPid, "sandboxID": c.PodID, "cgroupPath": c.CgroupPath,
			"bundle": s.engine.Bundle(c.ID), "imageID": c.ImageID,
		})
		if err != nil {
			return nil, fmt.Errorf("encode container info: %w", err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

func containerState(c *containerRecord) runtimeapi.ContainerState {
	switch c.State {
	case containerCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case containerRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	default:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func containerStatus(c *containerRecord) *runtimeapi.ContainerStatus {
	cfg := c.config
	// The process's groups as `id -G` lists them: the primary group, then the others.
	groups := []int64{c.GID}
	for _, g := range c.Groups {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	return &runtimeapi.ContainerStatus{
		Id: c.ID, Metadata: cfg.GetMetadata(), State: containerState(c),
		CreatedAt: unixNano(c.CreatedAt), StartedAt: unixNano(c.StartedAt), FinishedAt: unixNano(c.FinishedAt),
		ExitCode: c.ExitCode, Image: statusImage(cfg.GetImage()), ImageRef: c.ImageRef, ImageId: c.ImageID,
		Reason: c.Reason, Message: c.Message, Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		Mounts: statusMounts(cfg.GetMounts(), c.ImageVolumes), LogPath: c.LogPath,
		Resources: &runtimeapi.ContainerResources{Linux: cfg.GetLinux().GetResources()},
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: c.UID, Gid: c.GID, SupplementalGroups: groups,
		}},
	}
}

// statusImage is the image a container's status names: the one its pod spec named
// (the kubelet creates with the image's ID in Image and the spec's name in
// UserSpecifiedImage, and shows the status's in the pod's status, where users and the
// node e2e suite compare it with the spec), as CRI-O answers; else what the create named.
func statusImage(spec *runtimeapi.ImageSpec) *runtimeapi.ImageSpec {
	if spec.GetUserSpecifiedImage() == "" {
		return spec
	}
	return &runtimeapi.ImageSpec{Image: spec.GetUserSpecifiedImage(), UserSpecifiedImage: spec.GetUserSpecifiedImage(),
		Annotations: spec.GetAnnotations(), RuntimeHandler: spec.GetRuntimeHandler()}
}

// statusMounts reports the container's mounts; an image volume carries the ID of the
// image mounted (ImageSpec.image_ref).
func statusMounts(mounts []*runtimeapi.Mount, volumeIDs []string) []*runtimeapi.Mount {
	out := make([]*runtimeapi.Mount, 0, len(mounts))
	i := 0
	for _, m := range mounts {
		if m.GetImage().GetImage() != "" && i < len(volumeIDs) {
			m = proto.Clone(m).(*runtimeapi.Mount)
			m.Image.ImageRef = volumeIDs[i]
			i++
		}
		out = append(out, m)
	}
	return out
}
