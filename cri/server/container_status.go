package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/internal/logging"
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

// refresh brings a created or running container's record up to date with its shim:
// an exit it recorded, or a shim that is gone. It returns the current record, or nil
// when the container no longer exists.
func (s *Server) refresh(ctx context.Context, id string) *containerRecord {
	c, err := s.recs.container(id)
	if err != nil {
		return nil
	}
	if c.State == containerExited {
		return c
	}
	st := s.engine.State(id)
	updated := *c
	// A start cut off by a daemon crash after the monitor released the command, before
	// the record was saved: the monitor's mark says when it started.
	startedUnsaved := c.State == containerCreated && !st.StartedAt.IsZero()
	if startedUnsaved {
		updated.StartedAt = st.StartedAt
	}
	switch {
	case st.Exit != nil:
		updated.ExitCode, updated.FinishedAt = int32(st.Exit.Code), st.Exit.FinishedAt
		updated.Reason = "Completed"
		if st.Exit.Code != 0 {
			updated.Reason = "Error"
		}
		if cg, err := cgroups.Load(c.CgroupPath); err == nil && cg.OOMKills() > 0 {
			updated.Reason = "OOMKilled"
		}
	case !st.ShimAlive:
		if cgroups.Running(c.CgroupPath) {
			// The monitor is gone but the container's processes are not: it runs, and
			// stop and remove kill them through its cgroup.
			s.noteLostMonitor(ctx, c, true)
			s.polled.Store(id, true) // no shim is left to report its end
			return c
		}
		updated.ExitCode, updated.FinishedAt, updated.Reason = 255, time.Now(), "Unknown"
		updated.Message = s.lostMonitorMessage(id)
		s.noteLostMonitor(ctx, c, false)
	case startedUnsaved:
		updated.State = containerRunning
		s.transition.Lock()
		defer s.transition.Unlock()
		if cur, err := s.recs.container(id); err != nil || cur.State != containerCreated {
			return cur
		}
		if err := s.recs.saveContainer(&updated); err != nil {
			logging.From(ctx).Error("save container record", "container_id", id, "error", err)
			return c
		}
		s.emit(ctx, c.PodID, id, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
		return &updated
	default:
		return c
	}
	updated.State = containerExited
	s.transition.Lock()
	defer s.transition.Unlock()
	if cur, err := s.recs.container(id); err != nil || cur.State == containerExited {
		return cur // removed, or another refresh recorded the exit first
	}
	if err := s.recs.saveContainer(&updated); err != nil {
		logging.From(ctx).Error("save container record", "container_id", id, "error", err)
	}
	s.emit(ctx, c.PodID, id, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	return &updated
}

// lostMonitorMessage explains an exit no monitor recorded, naming the monitor's log
// when there is one (there is none after a reboot).
func (s *Server) lostMonitorMessage(id string) string {
	log := s.engine.MonitorLog(id)
	if _, err := os.Stat(log); err != nil {
		return "the container's monitor ended without recording an exit status (was the node restarted?)"
	}
	return "the container's monitor ended without recording an exit status; its log is " + log
}

// noteLostMonitor reports, once per container, a monitor that ended without recording
// an exit: with the container's processes still running, or with none left.
func (s *Server) noteLostMonitor(ctx context.Context, c *containerRecord, running bool) {
	if _, seen := s.lostMonitors.LoadOrStore(c.ID, true); seen {
		return
	}
	s.metrics.Monitor("lost")
	msg := "the container's monitor ended without recording an exit status; the container is reported exited"
	if running {
		msg = "the container's monitor ended while its processes run; stop or remove kills them through its cgroup"
	}
	logging.From(ctx).Warn(msg, "container_id", c.ID, "pod_id", c.PodID, "cgroup", c.CgroupPath, "monitor_log", s.engine.MonitorLog(c.ID))
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
