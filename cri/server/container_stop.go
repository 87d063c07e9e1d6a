package server

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// killWait bounds how long a SIGKILLed container may take to be reported exited.
const killWait = 10 * time.Second

// StopContainer sends the image's stop signal (SIGTERM by default), waits up to the
// timeout, then kills every process of the container. Stopping a stopped or unknown
// container succeeds.
func (s *Server) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	c, err := s.recs.container(req.GetContainerId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	unlock := s.recs.lock(c.ID)
	defer unlock()
	return &runtimeapi.StopContainerResponse{}, s.stopContainer(ctx, c.ID, time.Duration(req.GetTimeout())*time.Second)
}

// stopContainer stops a container; the caller holds its lock. It kills what is left
// in the container's cgroup even when the container has exited (children of an init
// that shares the pod's PID namespace) or its monitor is gone.
func (s *Server) stopContainer(ctx context.Context, id string, timeout time.Duration) error {
	c := s.sync(ctx, id)
	if c == nil {
		return nil
	}
	cg, err := s.cgroups.Load(c.CgroupPath)
	if err != nil {
		cg = nil // no cgroup: nothing of the container can be left in it
	}
	if c.State == containerExited && (cg == nil || !cg.HasProcesses()) {
		return nil
	}
	if c.State == containerRunning && timeout > 0 {
		s.signalStop(ctx, c, cg, timeout)
	}
	if cg != nil {
		if err := cg.KillAll(killWait); err != nil {
			logging.From(ctx).Warn("processes survived SIGKILL", "container_id", id, "error", err)
		}
	}
	_ = s.engine.Signal(id, syscall.SIGKILL) // an init outside the cgroup: not yet added
	wctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	if _, err := s.engine.Wait(wctx, id); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	s.sync(ctx, id)
	return nil
}

// signalStop sends the stop signal to the container's first process and waits up to
// timeout for it to end: through its monitor, or, when the monitor is gone, to the
// PID it recorded while that PID is still in the container's cgroup.
func (s *Server) signalStop(ctx context.Context, c *containerRecord, cg Cgroup, timeout time.Duration) {
	sig := stopSignal(c.StopSignal)
	st := s.engine.State(c.ID)
	if st.ShimAlive || cg == nil {
		_ = s.engine.Signal(c.ID, sig)
		wctx, cancel := context.WithTimeout(ctx, timeout)
		_, _ = s.engine.Wait(wctx, c.ID)
		cancel()
		return
	}
	if sent, err := cg.Signal(st.InitPid, sig); err != nil || !sent {
		logging.From(ctx).Warn("no first process to send the stop signal to", "container_id", c.ID, "pid", st.InitPid, "error", err)
		return
	}
	_ = cg.WaitEmpty(timeout)
}

// stopSignal parses an image's stop signal ("SIGQUIT", "QUIT" or "3"); SIGTERM by default.
func stopSignal(name string) syscall.Signal {
	if name == "" {
		return syscall.SIGTERM
	}
	if n, err := strconv.Atoi(name); err == nil {
		return syscall.Signal(n)
	}
	name = strings.ToUpper(name)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig
	}
	return syscall.SIGTERM
}
