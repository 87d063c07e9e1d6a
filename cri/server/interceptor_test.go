package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("pod x: %w", errdefs.ErrNotFound), codes.NotFound},
		{fmt.Errorf("bad: %w", errdefs.ErrInvalidArgument), codes.InvalidArgument},
		{errdefs.WithKind(errors.New("taken"), errdefs.ErrAlreadyExists), codes.AlreadyExists},
		{fmt.Errorf("x: %w", errdefs.ErrResourceExhausted), codes.ResourceExhausted},
		{fmt.Errorf("x: %w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{fmt.Errorf("x: %w", errdefs.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("x: %w", errdefs.ErrPermissionDenied), codes.PermissionDenied},
		{fmt.Errorf("x: %w", context.Canceled), codes.Canceled},
		{status.Error(codes.Unimplemented, "later"), codes.Unimplemented},
		{errors.New("disk on fire"), codes.Unknown},
	}
	for _, tt := range tests {
		got := toStatus(tt.err)
		assert.Equal(t, tt.want, status.Code(got), "%v", tt.err)
		if _, isStatus := status.FromError(tt.err); !isStatus {
			assert.Equal(t, tt.err.Error(), status.Convert(got).Message(), "the message is kept")
		}
	}
	assert.NoError(t, toStatus(nil))
}

func TestUnavailableUntilReady(t *testing.T) {
	h := newHarness(t, nil)
	_, err := h.runtime.Version(bg, &runtimeapi.VersionRequest{})
	requireCode(t, codes.Unavailable, err)
	_, err = h.images.ListImages(bg, &runtimeapi.ListImagesRequest{})
	requireCode(t, codes.Unavailable, err)

	h.ready(t, nil)
	_, err = h.runtime.Version(bg, &runtimeapi.VersionRequest{})
	assert.NoError(t, err)
}
