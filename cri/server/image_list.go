package server

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// ListImages lists the store's images; a filter names one image by ID or reference.
func (s *Server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	if want := req.GetFilter().GetImage().GetImage(); want != "" {
		img, err := s.images.Get(want)
		if errors.Is(err, errdefs.ErrNotFound) {
			return &runtimeapi.ListImagesResponse{}, nil
		}
		if err != nil {
			return nil, err
		}
		return &runtimeapi.ListImagesResponse{Images: []*runtimeapi.Image{toCRIImage(img)}}, nil
	}
	images := s.images.List()
	resp := &runtimeapi.ListImagesResponse{Images: make([]*runtimeapi.Image, 0, len(images))}
	for _, img := range images {
		resp.Images = append(resp.Images, toCRIImage(img))
	}
	return resp, nil
}
