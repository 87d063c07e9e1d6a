package container

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/atomicfile"
	"github.com/enroot-cri/enroot-cri/internal/nsenter"
)

// shimReadyFd is the descriptor on which the shim tells the daemon that the
// container is created ("ok PID") or why it is not ("error: …").
const shimReadyFd = 3

// drainTimeout bounds how long the shim waits, after the container's first process
// exits, for output still held by processes it left behind.
const drainTimeout = 2 * time.Second

// Exit is how a container's first process ended.
type Exit struct {
	Code       int       `json:"exit_code"`
	Signal     string    `json:"signal,omitempty"`
	FinishedAt time.Time `json:"finished_at"`
}

// shim is the per-container monitor: parent of the container's first process, holder
// of its stdio, writer of its log and exit status.
type shim struct {
	bundle string
	cfg    *Config
	cmd    *exec.Cmd
	start  *os.File // write end of the init's start pipe
	sync   *os.File // read end of the init's sync pipe
	copies sync.WaitGroup
	closer []io.Closer // the shim's copies of the container's stdio
	hub    hub
	log    *logWriter
	stdin  io.WriteCloser // the container's stdin (a pipe or the terminal), when it has one
	master *os.File       // the terminal's master side, for resize
	// afterStart run once the init runs: the shim drops its copy of a terminal's slave
	// end so that the master reports EOF when the container is done with it.
	afterStart []func()
}

// RunShim is `enroot-cri shim BUNDLE`. The daemon starts it detached, in its own
// session; it does not depend on the daemon staying up.
func RunShim(bundle string) error {
	ready := os.NewFile(shimReadyFd, "ready")
	s, err := newShim(bundle)
	if err == nil {
		err = s.create()
	}
	if err != nil {
		fmt.Fprintf(ready, "error: %v\n", err)
		return err
	}
	l, err := listenControl(bundle)
	if err != nil {
		_ = s.cmd.Process.Kill()
		fmt.Fprintf(ready, "error: %v\n", err)
		return err
	}
	fmt.Fprintf(ready, "ok %d\n", s.cmd.Process.Pid)
	ready.Close()
	go s.serve(l)
	return s.wait()
}

func newShim(bundle string) (*shim, error) {
	cfg, err := readConfig(bundle)
	if err != nil {
		return nil, err
	}
	return &shim{bundle: bundle, cfg: cfg}, nil
}

// create starts the container's init and waits until its root filesystem is ready.
func (s *shim) create() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	s.cmd = exec.Command(exe, "init", s.bundle)
	s.cmd.Env = []string{}
	if err := s.setupStdio(); err != nil {
		return err
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create sync pipe: %w", err)
	}
	startR, startW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create start pipe: %w", err)
	}
	s.sync, s.start = syncR, startW
	s.cmd.ExtraFiles = []*os.File{syncW, startR}
	s.cmd.SysProcAttr.Cloneflags = cloneFlags(&s.cfg.Spec)
	if usernsOf(&s.cfg.Spec) {
		files, bundle, err := s.userns(exe)
		if err != nil {
			syncW.Close()
			startR.Close()
			return err
		}
		s.cmd.ExtraFiles = append(s.cmd.ExtraFiles, files...)
		s.cmd.Args[2] = bundle
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
	}
	err = startInNamespaces(s.cmd, &s.cfg.Spec)
	syncW.Close()
	startR.Close()
	if err != nil {
		return fmt.Errorf("start container init: %w", err)
	}
	line, err := readLine(s.sync)
	if err != nil || line != "ready" {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		if line == "" && err != nil {
			return fmt.Errorf("container init: %w", err)
		}
		return fmt.Errorf("container init: %s", trimError(line))
	}
	return nil
}

func trimError(line string) string {
	rest, _ := strings.CutPrefix(line, "error: ")
	return rest
}

// cloneFlags are the namespaces the init gets new: always a mount namespace, and
// each listed namespace that has no path to join.
func cloneFlags(spec *specs.Spec) uintptr {
	flags := uintptr(unix.CLONE_NEWNS)
	for t, flag := range map[specs.LinuxNamespaceType]uintptr{
		specs.PIDNamespace: unix.CLONE_NEWPID, specs.NetworkNamespace: unix.CLONE_NEWNET,
		specs.IPCNamespace: unix.CLONE_NEWIPC, specs.UTSNamespace: unix.CLONE_NEWUTS,
		specs.CgroupNamespace: unix.CLONE_NEWCGROUP,
	} {
		if p, listed := namespacePath(spec, t); listed && p == "" {
			flags |= flag
		}
	}
	return flags
}

// startInNamespaces starts cmd inside the namespaces the spec gives paths for.
func startInNamespaces(cmd *exec.Cmd, spec *specs.Spec) error {
	var paths []string
	for _, t := range []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace,
		specs.NetworkNamespace, specs.PIDNamespace} {
		p, _ := namespacePath(spec, t)
		paths = append(paths, p)
	}
	return nsenter.Start(cmd, paths...)
}

// setupStdio connects the init's stdio to a terminal or to pipes, and starts copying
// its output to the CRI log.
func (s *shim) setupStdio() error {
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	logPath := s.cfg.LogPath
	if logPath == "" {
		logPath = os.DevNull
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return fmt.Errorf("create log directory: %w", err)
	}
	logFile, err := openLog(logPath)
	if err != nil {
		return err
	}
	w := &logWriter{out: logFile, now: time.Now}
	s.log = w
	s.closer = append(s.closer, closerFunc(func() error { return w.close() }))
	if s.cfg.Spec.Process.Terminal {
		return s.setupTerminal(w)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if s.cfg.Stdin {
		stdin, err := s.cmd.StdinPipe()
		if err != nil {
			return err
		}
		s.stdin = stdin // held open: attach writes to it
		s.closer = append(s.closer, stdin)
	}
	s.copy(w, Stdout, frameStdout, stdout)
	s.copy(w, Stderr, frameStderr, stderr)
	return nil
}

func (s *shim) setupTerminal(w *logWriter) error {
	master, slave, err := openPty()
	if err != nil {
		return err
	}
	s.cmd.Stdin, s.cmd.Stdout, s.cmd.Stderr = slave, slave, slave
	s.cmd.SysProcAttr.Setctty = true
	s.cmd.SysProcAttr.Ctty = 0
	s.closer = append(s.closer, master)
	s.master = master
	if s.cfg.Stdin {
		s.stdin = master
	}
	s.afterStart = append(s.afterStart, func() { slave.Close() })
	s.copy(w, Stdout, frameStdout, master)
	return nil
}

// copy writes r to the log as stream and to attached clients as they read it.
func (s *shim) copy(w *logWriter, stream string, frame byte, r io.Reader) {
	s.copies.Add(1)
	go func() {
		defer s.copies.Done()
		_ = w.copyStream(stream, io.TeeReader(r, s.hub.writer(frame)))
	}()
}

// openPty opens a new pseudo-terminal pair.
func openPty() (*os.File, *os.File, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("find pty: %w", err)
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	return master, slave, nil
}

// wait waits for the init to end, lets its output drain, and records the exit status.
func (s *shim) wait() error {
	for _, f := range s.afterStart {
		f()
	}
	err := s.cmd.Wait()
	exit := Exit{FinishedAt: time.Now().UTC()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			exit.Code = 128 + int(ws.Signal())
			exit.Signal = unix.SignalName(ws.Signal())
		} else {
			exit.Code = ws.ExitStatus()
		}
	default:
		exit.Code = 255
	}
	drained := make(chan struct{})
	go func() { s.copies.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
	}
	for _, c := range s.closer {
		c.Close()
	}
	s.hub.closeAll()
	return atomicfile.WriteJSON(filepath.Join(s.bundle, "exit.json"), exit)
}

// controlAddress is the abstract unix socket of a bundle's shim (a filesystem path
// could exceed the 108-byte limit under deep state directories).
func controlAddress(bundle string) string {
	sum := sha256.Sum256([]byte(bundle))
	return "@enroot-cri-shim-" + hex.EncodeToString(sum[:16])
}

func listenControl(bundle string) (net.Listener, error) {
	l, err := net.Listen("unix", controlAddress(bundle))
	if err != nil {
		return nil, fmt.Errorf("listen for control: %w", err)
	}
	return l, nil
}

// serve answers control requests: "start" releases the init.
func (s *shim) serve(l net.Listener) {
	var once sync.Once
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			if !fromRoot(conn) {
				return
			}
			req, err := readLine(conn)
			if err != nil {
				return
			}
			switch {
			case req == "attach":
				s.serveAttach(conn)
				conn = nil // the hub owns it now
				return
			case strings.HasPrefix(req, "resize "):
				if err := s.resize(req); err != nil {
					fmt.Fprintf(conn, "error: %v\n", err)
				} else {
					fmt.Fprintln(conn, "ok")
				}
			case req == "reopen-log":
				if err := s.reopenLog(); err != nil {
					fmt.Fprintf(conn, "error: %v\n", err)
				} else {
					fmt.Fprintln(conn, "ok")
				}
			case req == "start":
				var reply string
				once.Do(func() { reply = s.release() })
				if reply == "" {
					reply = "error: already started"
				}
				fmt.Fprintln(conn, reply)
			default:
				fmt.Fprintf(conn, "error: unknown request %q\n", req)
			}
		}()
	}
}

// release lets the init execute the command and reports whether the exec worked.
func (s *shim) release() string {
	if _, err := s.start.Write([]byte{1}); err != nil {
		return fmt.Sprintf("error: release container: %v", err)
	}
	s.start.Close()
	line, err := readLine(s.sync)
	s.sync.Close()
	if errors.Is(err, io.EOF) && line == "" {
		return "ok" // the sync pipe closed on exec
	}
	return "error: " + trimError(line)
}

// fromRoot reports whether the peer of a control connection runs as root.
func fromRoot(conn net.Conn) bool {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return err == nil && cred != nil && cred.Uid == 0
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640) //nolint:gosec // log readers in the group, as containerd
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	return f, nil
}

// reopenLog starts a new log file at the configured path (the kubelet renamed the old
// one to rotate it).
func (s *shim) reopenLog() error {
	if s.cfg.LogPath == "" {
		return nil
	}
	f, err := openLog(s.cfg.LogPath)
	if err != nil {
		return err
	}
	s.log.swap(f)
	return nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
