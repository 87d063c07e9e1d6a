package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// CreateContainer creates a container in a pod: the image's squashfs is mounted (once
// per image), the container's cgroup made, and its init set up and waiting for
// StartContainer. A failure leaves nothing behind.
func (s *Server) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (_ *runtimeapi.CreateContainerResponse, err error) {
	cfg := req.GetConfig()
	if err := validateContainer(cfg); err != nil {
		return nil, err
	}
	pod, err := s.recs.pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	unlock := s.recs.lock(pod.ID)
	defer unlock()
	if pod, err = s.recs.pod(pod.ID); err != nil {
		return nil, err
	}
	if pod.State != podReady {
		return nil, fmt.Errorf("pod sandbox %s is not ready: %w", pod.ID, errdefs.ErrFailedPrecondition)
	}
	if err := s.checkContainerName(pod.ID, cfg.GetMetadata()); err != nil {
		return nil, err
	}
	img, err := s.images.Get(cfg.GetImage().GetImage())
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("config.image %q is not on this node; pull it first: %w", cfg.GetImage().GetImage(), err)
	}
	if err != nil {
		return nil, err
	}
	id := newID()
	ctx = logging.With(ctx, logging.From(ctx).With("container", cfg.GetMetadata().GetName(), "container_id", id))
	var u undo
	defer u.run(ctx, &err)
	rec, err := s.createContainer(ctx, &u, id, pod, cfg, img)
	if err != nil {
		return nil, err
	}
	if err := s.created(ctx, rec); err != nil {
		return nil, err
	}
	if err := s.notePodCgroupParents(pod, rec.CgroupParents); err != nil {
		logging.From(ctx).Warn("record the pod's cgroup parents", "error", err)
	}
	if err := s.donePending(id); err != nil {
		logging.From(ctx).Warn("forget the pending cgroup", "error", err)
	}
	s.watch(ctx, id)
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

func (s *Server) createContainer(ctx context.Context, u *undo, id string, pod *podRecord,
	cfg *runtimeapi.ContainerConfig, img *image.Image) (*containerRecord, error) {
	root, err := s.mounts.Acquire(ctx, img.ID, img.Squashfs)
	if err != nil {
		return nil, err
	}
	u.push(func() error { return s.mounts.Release(img.ID) })
	sc := cfg.GetLinux().GetSecurityContext()
	volumes, volumeIDs, err := s.imageVolumes(ctx, u, cfg)
	if err != nil {
		return nil, err
	}
	ccfg, user, err := s.containerConfig(ctx, id, pod, cfg, img, root, volumes)
	if err != nil {
		return nil, err
	}
	binding, err := s.gpuBinding(u, id, pod, cfg)
	if err != nil {
		return nil, err
	}
	if binding != nil {
		if err := s.applyGPUBinding(ccfg, binding, cfg); err != nil {
			return nil, err
		}
	}
	cgPath, err := cgroups.ContainerPath(s.driver, pod.config.GetLinux().GetCgroupParent(), id)
	if err != nil {
		return nil, err
	}
	res, autoCPUs := s.confinement(cfg.GetLinux().GetResources(), sc.GetPrivileged(), ccfg.Spec.Linux.Devices, "")
	// Written down first: a daemon killed before the record is saved removes this
	// cgroup at its next start.
	if err := s.notePending(pending{ID: id, CgroupPath: cgPath, CgroupParents: s.cgroups.MissingAncestors(cgPath)}); err != nil {
		return nil, err
	}
	u.push(func() error { return s.donePending(id) })
	cg, madeAncestors, err := s.cgroups.Create(cgPath, res)
	if err != nil {
		return nil, err
	}
	u.push(func() error {
		_ = cg.KillAll(killWait)
		err := cg.Delete()
		s.cgroups.RemoveAncestors(madeAncestors)
		return err
	})
	// The shim puts the init in the cgroup before the init does anything, so that
	// its cgroup namespace and its view of /sys/fs/cgroup are the container's.
	ccfg.CgroupProcs, ccfg.CgroupView = cgroups.ProcsFiles(cgPath), cgroupView(cgPath)
	if _, err := s.engine.Create(ctx, ccfg); err != nil {
		return nil, err
	}
	u.push(func() error { return s.engine.Delete(id) })
	rec := &containerRecord{
		ID: id, PodID: pod.ID, ImageID: img.ID, ImageRef: imageRef(img), State: containerCreated,
		CreatedAt: time.Now(), LogPath: ccfg.LogPath, CgroupPath: cgPath, Cpuset: cpuset(res), CpusetAuto: autoCPUs, CgroupParents: madeAncestors, StopSignal: img.StopSignal,
		UID: user.UID, GID: user.GID, Groups: user.Groups, ImageVolumes: volumeIDs, config: cfg,
	}
	if rec.Config, err = protojson.Marshal(cfg); err != nil {
		return nil, fmt.Errorf("encode container config: %w", err)
	}
	return rec, nil
}

func validateContainer(cfg *runtimeapi.ContainerConfig) error {
	switch {
	case cfg == nil:
		return fmt.Errorf("config is missing: %w", errdefs.ErrInvalidArgument)
	case cfg.GetMetadata().GetName() == "":
		return fmt.Errorf("config.metadata.name is empty: %w", errdefs.ErrInvalidArgument)
	case cfg.GetImage().GetImage() == "":
		return fmt.Errorf("config.image.image is empty: %w", errdefs.ErrInvalidArgument)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	for field, v := range map[string]*runtimeapi.Int64Value{"run_as_user": sc.GetRunAsUser(), "run_as_group": sc.GetRunAsGroup()} {
		if v != nil && (v.GetValue() < 0 || v.GetValue() > 1<<32-2) {
			return fmt.Errorf("config.linux.security_context.%s %d is not a user or group ID; allowed: 0 to 4294967294: %w", field, v.GetValue(), errdefs.ErrInvalidArgument)
		}
	}
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
		return fmt.Errorf("config.linux.security_context.run_as_group needs run_as_user or run_as_username: %w", errdefs.ErrInvalidArgument)
	}
	for i, g := range sc.GetSupplementalGroups() {
		if g < 0 || g > 1<<32-2 {
			return fmt.Errorf("config.linux.security_context.supplemental_groups[%d] %d is not a group ID: %w", i, g, errdefs.ErrInvalidArgument)
		}
	}
	for i, kv := range cfg.GetEnvs() {
		if kv.GetKey() == "" || strings.ContainsAny(kv.GetKey(), "=\x00") || bytes.Contains(kv.GetValue(), []byte{0}) {
			return fmt.Errorf("config.envs[%d]: %q is not a variable name (non-empty, no '=' or NUL) or its value holds NUL: %w", i, kv.GetKey(), errdefs.ErrInvalidArgument)
		}
	}
	return validateResources("config.linux.resources", cfg.GetLinux().GetResources())
}

// notePodCgroupParents adds the cgroups a container's create made above its own to
// its pod's record; the caller holds the pod's lock.
func (s *Server) notePodCgroupParents(pod *podRecord, made []string) error {
	cur, err := s.recs.pod(pod.ID)
	if err != nil || len(made) == 0 {
		return err
	}
	updated := *cur
	updated.CgroupParents = slices.Clone(cur.CgroupParents)
	for _, p := range made {
		if !slices.Contains(updated.CgroupParents, p) {
			updated.CgroupParents = append(updated.CgroupParents, p)
		}
	}
	// Deepest last, as RemoveAncestors wants them.
	slices.SortStableFunc(updated.CgroupParents, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	return s.recs.savePod(&updated)
}

// checkContainerName refuses a second container with the same name and attempt in a
// pod.
func (s *Server) checkContainerName(podID string, md *runtimeapi.ContainerMetadata) error {
	for _, c := range s.recs.containersOf(podID) {
		cm := c.config.GetMetadata()
		if cm.GetName() == md.GetName() && cm.GetAttempt() == md.GetAttempt() {
			return fmt.Errorf("container name %q (attempt %d) is already used by container %s in pod %s: %w",
				md.GetName(), md.GetAttempt(), c.ID, podID, errdefs.ErrAlreadyExists)
		}
	}
	return nil
}

// imageRef is what ContainerStatus reports as image_ref: a repo digest, else the ID.
func imageRef(img *image.Image) string {
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID
}

func optional(v *runtimeapi.Int64Value) *int64 {
	if v == nil {
		return nil
	}
	x := v.GetValue()
	return &x
}
