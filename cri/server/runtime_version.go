package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/version"
)

// kubeletAPIVersion is the CRI's own "version of the kubelet runtime API" field.
const kubeletAPIVersion = "0.1.0"

// Version reports the runtime's name and versions.
func (s *Server) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeletAPIVersion,
		RuntimeName:       version.RuntimeName,
		RuntimeVersion:    version.Semantic(),
		RuntimeApiVersion: version.CRIAPIVersion,
	}, nil
}
