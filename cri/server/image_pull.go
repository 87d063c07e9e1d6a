package server

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// pullProgressInterval is how often a running pull logs its progress.
const pullProgressInterval = 5 * time.Second

// PullImage pulls an image into the squashfs store and returns its ID.
func (s *Server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("image.image is empty; give an image name such as busybox:1.36: %w", errdefs.ErrInvalidArgument)
	}
	log := logging.From(ctx).With("image", ref)
	a := req.GetAuth()
	var downloaded int64
	built := false
	img, err := s.images.Pull(ctx, ref, image.PullOptions{
		Auth: image.Auth{
			Username: a.GetUsername(), Password: a.GetPassword(), Auth: a.GetAuth(),
			IdentityToken: a.GetIdentityToken(), RegistryToken: a.GetRegistryToken(),
		},
		ProgressInterval: pullProgressInterval,
		OnProgress: func(p image.Progress) {
			log.Info("pulling", "layers_done", p.LayersDone, "layers", p.Layers, "bytes", p.Bytes,
				"mb_per_s", fmt.Sprintf("%.1f", float64(p.Bytes)/1e6/p.Elapsed.Seconds()))
		},
		OnBuilt: func(st image.Stats) {
			built, downloaded = true, st.Downloaded
			log.Info("built squashfs image", "layers", st.Layers, "downloaded_bytes", st.Downloaded,
				"download", st.Download.Round(time.Millisecond), "index", st.Index.Round(time.Millisecond),
				"squash", st.Squash.Round(time.Millisecond), "total", st.Total.Round(time.Millisecond))
		},
	})
	switch {
	case err != nil:
		s.metrics.Pull("failed", 0)
		return nil, err
	case built:
		s.metrics.Pull("built", downloaded)
	default:
		s.metrics.Pull("present", 0)
	}
	log.Info("pulled", "id", img.ID, "squashfs", img.Squashfs, "size", img.Size)
	return &runtimeapi.PullImageResponse{ImageRef: img.ID}, nil
}
