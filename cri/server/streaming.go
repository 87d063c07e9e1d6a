package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"k8s.io/cri-streaming/pkg/streaming"
	remotecommandserver "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/nsenter"
)

// StartStreaming serves exec, attach and port-forward on l (the configured loopback
// address); the Exec, Attach and PortForward RPCs hand out URLs on it.
func (s *Server) StartStreaming(l net.Listener) (stop func(), err error) {
	cfg := streaming.DefaultConfig
	cfg.Addr = l.Addr().String()
	cfg.BaseURL = &url.URL{Scheme: "http", Host: l.Addr().String()}
	srv, err := streaming.NewServer(cfg, streamRuntime{s})
	if err != nil {
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	s.stream = srv
	var wg sync.WaitGroup
	wg.Go(func() { _ = httpServe(l, srv) })
	return func() { l.Close(); wg.Wait() }, nil
}

// streamRuntime runs what the streaming server's clients ask for.
type streamRuntime struct{ s *Server }

func (r streamRuntime) Exec(ctx context.Context, containerID string, cmd []string, in io.Reader,
	out, errw io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	code, err := r.s.exec(ctx, containerID, container.ExecOptions{
		Args: cmd, Tty: tty, Stdin: in, Stdout: writerOrNil(out), Stderr: writerOrNil(errw), Resize: sizes(ctx, resize),
	})
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (r streamRuntime) Attach(ctx context.Context, containerID string, in io.Reader,
	out, errw io.WriteCloser, tty bool, resize <-chan remotecommandserver.TerminalSize) error {
	c, err := r.s.recs.container(containerID)
	if err != nil {
		return err
	}
	return r.s.engine.Attach(ctx, c.ID, in, writerOrNil(out), writerOrNil(errw), sizes(ctx, resize))
}

func (r streamRuntime) PortForward(ctx context.Context, podSandboxID string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	pod, err := r.s.recs.pod(podSandboxID)
	if err != nil {
		return err
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port %d is out of range: %w", port, errdefs.ErrInvalidArgument)
	}
	conn, err := nsenter.Dial(pod.Sandbox.NetNS, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("connect to port %d in pod %s: %w", port, pod.ID, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); _ = conn.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// exec runs a process in a container with the container's cgroup.
func (s *Server) exec(ctx context.Context, containerID string, opts container.ExecOptions) (int, error) {
	c, err := s.runningContainer(ctx, containerID)
	if err != nil {
		return 0, err
	}
	opts.CgroupProcs = cgroups.ProcsFiles(c.CgroupPath)
	return s.engine.Exec(ctx, c.ID, opts)
}

func writerOrNil(w io.WriteCloser) io.Writer {
	if w == nil {
		return nil
	}
	return w
}

// sizes converts the streaming server's terminal sizes to the engine's.
func sizes(ctx context.Context, in <-chan remotecommandserver.TerminalSize) <-chan container.TerminalSize {
	if in == nil {
		return nil
	}
	out := make(chan container.TerminalSize)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case sz, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- container.TerminalSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// httpServe serves h on l until l closes.
func httpServe(l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	return srv.Serve(l)
}
