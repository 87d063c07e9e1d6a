package server

import (
	"bytes"
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// maxExecSyncOutput caps each captured stream of ExecSync, as the kubelet's probes need
// little and a runaway command must not exhaust the daemon: both together stay under
// the kubelet's 16 MiB message limit.
const maxExecSyncOutput = 8<<20 - 32<<10

// ExecSync runs a command in a running container and returns its output and exit
// code; a timeout (seconds, 0 for none) kills it.
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("cmd is empty: %w", errdefs.ErrInvalidArgument)
	}
	if t := req.GetTimeout(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Second)
		defer cancel()
	}
	var stdout, stderr capped
	code, err := s.exec(ctx, req.GetContainerId(), container.ExecOptions{Args: req.GetCmd(), Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		if ctx.Err() != nil && req.GetTimeout() > 0 {
			return nil, fmt.Errorf("command %v timed out after %ds: %w", req.GetCmd(), req.GetTimeout(), context.DeadlineExceeded)
		}
		return nil, err
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(code)}, nil
}

// capped keeps the first maxExecSyncOutput bytes written to it and drops the rest.
// It is only an io.Writer (no ReadFrom), so that io.Copy goes through Write.
type capped struct{ buf bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxExecSyncOutput - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Bytes is what was kept.
func (c *capped) Bytes() []byte { return c.buf.Bytes() }
