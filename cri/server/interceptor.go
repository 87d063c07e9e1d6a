package server

import (
	"context"
	"errors"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// kinds maps error kinds to gRPC codes, most specific first.
var kinds = []struct {
	kind error
	code codes.Code
}{
	{errdefs.ErrInvalidArgument, codes.InvalidArgument},
	{errdefs.ErrNotFound, codes.NotFound},
	{errdefs.ErrAlreadyExists, codes.AlreadyExists},
	{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
	{errdefs.ErrResourceExhausted, codes.ResourceExhausted},
	{errdefs.ErrUnavailable, codes.Unavailable},
	{errdefs.ErrUnimplemented, codes.Unimplemented},
	{errdefs.ErrUnauthenticated, codes.Unauthenticated},
	{errdefs.ErrPermissionDenied, codes.PermissionDenied},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// toStatus turns an error into a gRPC status error; its message is the error's.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, k := range kinds {
		if errors.Is(err, k.kind) {
			return status.Error(k.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// quiet RPCs are polled by the kubelet; their successes are logged at debug level.
func quiet(method string) bool {
	for _, prefix := range []string{"List", "Version", "Status", "ImageStatus", "ImageFsInfo",
		"ContainerStatus", "PodSandboxStatus", "RuntimeConfig", "ContainerStats", "PodSandboxStats"} {
		if strings.HasPrefix(method, prefix) {
			return true
		}
	}
	return false
}

// UnaryInterceptor answers Unavailable until ready reports true, puts a logger with
// the rpc field in the context, logs the call with its duration and result, and maps
// error kinds to codes.
func (s *Server) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	method := path.Base(info.FullMethod)
	log := s.log.With("rpc", method)
	if !s.ready.Load() {
		return nil, status.Error(codes.Unavailable, "enroot-cri is recovering its state; retry shortly")
	}
	defer func() {
		// A bug in one call must not take the node's runtime down.
		if p := recover(); p != nil {
			log.Error("call panicked", "panic", p, "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "enroot-cri: internal error in %s: %v", method, p)
		}
	}()
	start := time.Now()
	resp, err = handler(logging.With(ctx, log), req)
	err = toStatus(err)
	code := status.Code(err)
	took := time.Since(start)
	s.metrics.RPC(method, code.String(), took)
	attrs := []any{"duration", took.Round(time.Microsecond), "code", code.String()}
	switch {
	case err != nil && (code == codes.Unknown || code == codes.Internal):
		log.Error("call failed", append(attrs, "error", err)...)
	case err != nil:
		log.Warn("call refused", append(attrs, "error", err)...)
	case quiet(method):
		log.Debug("call", attrs...)
	default:
		log.Info("call", attrs...)
	}
	return resp, err
}

// StreamInterceptor answers Unavailable until ready and logs the end of each stream.
func (s *Server) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	method := path.Base(info.FullMethod)
	if !s.ready.Load() {
		return status.Error(codes.Unavailable, "enroot-cri is recovering its state; retry shortly")
	}
	start := time.Now()
	err := toStatus(handler(srv, ss))
	s.log.Debug("stream ended", "rpc", method, "duration", time.Since(start).Round(time.Millisecond), "code", status.Code(err).String())
	return err
}
