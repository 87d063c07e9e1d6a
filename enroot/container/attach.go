package container

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Attach frames: the shim sends [stream byte][length uint32][data] to an attached
// client; the client sends raw stdin bytes.
// hub fans the container's output out to attached clients.
type hub struct {
	mu   sync.Mutex
	subs map[net.Conn]*sync.Mutex
}

func (h *hub) add(c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[net.Conn]*sync.Mutex{}
	}
	h.subs[c] = &sync.Mutex{}
}

func (h *hub) remove(c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, c)
	c.Close()
}

// writer returns an io.Writer that sends what it gets to every client as stream.
func (h *hub) writer(stream byte) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.mu.Lock()
		subs := make(map[net.Conn]*sync.Mutex, len(h.subs))
		for c, m := range h.subs {
			subs[c] = m
		}
		h.mu.Unlock()
		frame := make([]byte, 5+len(p))
		frame[0] = stream
		binary.BigEndian.PutUint32(frame[1:5], uint32(len(p)))
		copy(frame[5:], p)
		for c, m := range subs {
			m.Lock()
			_, err := c.Write(frame)
			m.Unlock()
			if err != nil {
				h.remove(c)
			}
		}
		return len(p), nil
	})
}

// closeAll ends every attachment (the container is done).
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		c.Close()
	}
	h.subs = nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// serveAttach streams output to conn and copies conn's bytes to the container's stdin.
func (s *shim) serveAttach(conn net.Conn) {
	s.hub.add(conn)
	if s.stdin == nil {
		return // output only; the hub closes conn when the container ends
	}
	go func() {
		_, _ = io.Copy(s.stdin, conn)
		if s.cfg.StdinOnce && !s.cfg.Spec.Process.Terminal {
			s.stdin.Close()
		}
	}()
}

// resize sets the container's terminal size from a reqResize request ("resize W H").
func (s *shim) resize(req string) error {
	f := strings.Fields(req)
	if len(f) != 3 || s.master == nil {
		return fmt.Errorf("resize needs a terminal and WIDTH HEIGHT")
	}
	w, err1 := strconv.Atoi(f[1])
	h, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad size %q", req)
	}
	return unix.IoctlSetWinsize(int(s.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(w), Row: uint16(h)})
}

// Attach connects in, out and errw to the running container's stdio through its shim
// until the container ends or ctx does.
func (e *Engine) Attach(ctx context.Context, id string, in io.Reader, out, errw io.Writer, resize <-chan TerminalSize) error {
	if _, err := e.running(id); err != nil {
		return err
	}
	conn, err := dialControl(ctx, e.Bundle(id))
	if err != nil {
		return fmt.Errorf("reach shim of %s: %w", id, err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintln(conn, reqAttach); err != nil {
		return fmt.Errorf("attach %s: %w", id, err)
	}
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	if in != nil {
		go func() {
			_, _ = io.Copy(conn, in)
			_ = conn.(*net.UnixConn).CloseWrite()
		}()
	}
	go e.forwardResize(ctx, id, resize)
	return readFrames(conn, out, errw)
}

func (e *Engine) forwardResize(ctx context.Context, id string, sizes <-chan TerminalSize) {
	for {
		select {
		case <-ctx.Done():
			return
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			_ = e.control(ctx, id, fmt.Sprintf("%s %d %d", reqResize, sz.Width, sz.Height))
		}
	}
}

// readFrames copies framed output to out and errw until the shim closes.
func readFrames(r io.Reader, out, errw io.Writer) error {
	head := make([]byte, 5)
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			return nil // the shim ended the attachment
		}
		n := binary.BigEndian.Uint32(head[1:])
		w := out
		if head[0] == frameStderr {
			w = errw
		}
		if w == nil {
			w = io.Discard
		}
		if _, err := io.CopyN(w, r, int64(n)); err != nil {
			return nil
		}
	}
}

// control sends one request to the shim and returns its answer's error.
func (e *Engine) control(ctx context.Context, id, req string) error {
	conn, err := dialControl(ctx, e.Bundle(id))
	if err != nil {
		return fmt.Errorf("reach shim of %s: %w", id, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	if _, err := fmt.Fprintln(conn, req); err != nil {
		return err
	}
	reply, err := readLine(conn)
	if err != nil {
		return err
	}
	if rest, ok := strings.CutPrefix(reply, errorPrefix); ok {
		return fmt.Errorf("%s: %s", req, rest)
	}
	return nil
}

// ReopenLog asks the shim of a running container to reopen its log file.
func (e *Engine) ReopenLog(ctx context.Context, id string) error {
	if _, err := e.running(id); err != nil {
		return err
	}
	return e.control(ctx, id, reqReopenLog)
}
