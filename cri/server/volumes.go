package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/inroot"
)

// imageVolumes mounts the images the container asks for as volumes (CRI mounts with
// an image): each image's squashfs, shared like a root filesystem, bound read-only at
// the container path, or only its image_sub_path. It returns the mounts and the image
// IDs it holds a use of.
func (s *Server) imageVolumes(ctx context.Context, u *undo, cfg *runtimeapi.ContainerConfig) ([]specs.Mount, []string, error) {
	var mounts []specs.Mount
	var ids []string
	for i, m := range cfg.GetMounts() {
		ref := m.GetImage().GetImage()
		if ref == "" {
			continue
		}
		field := fmt.Sprintf("config.mounts[%d]", i)
		if !filepath.IsAbs(m.GetContainerPath()) {
			return nil, nil, fmt.Errorf("%s.container_path %q must be absolute: %w", field, m.GetContainerPath(), errdefs.ErrInvalidArgument)
		}
		if !m.GetReadonly() {
			return nil, nil, fmt.Errorf("%s: an image volume is always read-only; set readonly: true: %w", field, errdefs.ErrInvalidArgument)
		}
		img, err := s.images.Get(ref)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, nil, fmt.Errorf("%s.image %q is not on this node; pull it first: %w", field, ref, err)
		}
		if err != nil {
			return nil, nil, err
		}
		root, err := s.mounts.Acquire(ctx, img.ID, img.Squashfs)
		if err != nil {
			return nil, nil, err
		}
		u.push(func() error { return s.mounts.Release(img.ID) })
		ids = append(ids, img.ID)
		source := root
		if sub := m.GetImageSubPath(); sub != "" {
			if filepath.IsAbs(sub) || strings.HasPrefix(filepath.Clean(sub), "..") {
				return nil, nil, fmt.Errorf("%s.image_sub_path %q must be a relative path inside the image: %w", field, sub, errdefs.ErrInvalidArgument)
			}
			source, err = inroot.Resolve(root, sub)
			if err != nil {
				return nil, nil, fmt.Errorf("%s.image_sub_path %q: %w", field, sub, errdefs.WithKind(err, errdefs.ErrInvalidArgument))
			}
		}
		mounts = append(mounts, specs.Mount{Destination: m.GetContainerPath(), Type: "bind", Source: source,
			Options: []string{"rbind", "ro", "nosuid", "nodev", "rprivate"}})
	}
	return mounts, ids, nil
}
