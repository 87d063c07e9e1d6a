package container

import (
	"context"
	"encoding/json"
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
	// console receives the terminal's master from the init, which opens the terminal
	// in the container's devpts; console is handed to the init as initConsoleFd.
	console, consoleInit *os.File
	logw                 *logWriter
	childEnds            []*os.File // the init's ends of its output pipes, closed once it started
	starting             sync.Mutex // held while a start request is answered
}

// RunShim is `enroot-cri shim BUNDLE`. The daemon starts it detached, in its own
// session; it does not depend on the daemon staying up.
func RunShim(bundle string) error {
	ready := os.NewFile(shimReadyFd, "ready")
	sealedBin := os.NewFile(shimSealedFd, "enroot-cri (sealed)")
	s, err := newShim(bundle)
	if err == nil {
		err = s.create(sealedBin)
	}
	sealedBin.Close()
	if err != nil {
		fmt.Fprintf(ready, "%s%v\n", errorPrefix, err)
		return err
	}
	l, err := listenControl(bundle)
	if err != nil {
		_ = s.cmd.Process.Kill()
		fmt.Fprintf(ready, "%s%v\n", errorPrefix, err)
		return err
	}
	fmt.Fprintf(ready, "%s %d\n", answerOK, s.cmd.Process.Pid)
	ready.Close()
	go s.serve(l)
	err = s.wait()
	// A command that ends at once can end before its start was answered.
	s.starting.Lock()
	return err
}

func newShim(bundle string) (*shim, error) {
	cfg, err := readConfig(bundle)
	if err != nil {
		return nil, err
	}
	return &shim{bundle: bundle, cfg: cfg}, nil
}

// create starts the container's init from the sealed binary, puts it in the
// container's cgroup and waits until its root filesystem is ready.
func (s *shim) create(sealedBin *os.File) error {
	// A descriptor number above those the init gets, so that the path still names the
	// copy in the child until it executes.
	high, err := unix.FcntlInt(sealedBin.Fd(), unix.F_DUPFD_CLOEXEC, 100)
	if err != nil {
		return fmt.Errorf("keep the sealed binary: %w", err)
	}
	defer unix.Close(high)
	s.cmd = exec.Command(fmt.Sprintf("/proc/self/fd/%d", high), "init")
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
	s.cmd.SysProcAttr.Cloneflags = cloneFlags(&s.cfg.Spec) // initFiles adds a user namespace
	files, err := s.initFiles()
	if err != nil {
		syncW.Close()
		startR.Close()
		return err
	}
	defer closeAll(files)
	// files: the configuration (5), the console socket or nothing (6), the root and mount
	// sources (7 on).
	extra := []*os.File{syncW, startR, files[0], s.consoleInit}
	s.cmd.ExtraFiles = append(extra, files[1:]...)
	err = s.startInit()
	syncW.Close()
	startR.Close()
	closeAll(s.childEnds)
	if s.consoleInit != nil {
		s.consoleInit.Close()
	}
	if err != nil {
		return fmt.Errorf("start container init: %w", err)
	}
	if s.console != nil {
		if err := s.takeTerminal(); err != nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
			return err
		}
	}
	return s.waitReady()
}

// initFiles are the init's configuration and, in a user namespace, its root and mount
// sources, from descriptor initConfigFd on.
func (s *shim) initFiles() ([]*os.File, error) {
	cfg := *s.cfg
	cfg.Rootfs = filepath.Join(s.bundle, "rootfs")
	var extra []*os.File
	if usernsOf(&cfg.Spec) {
		var err error
		if extra, err = s.userns(s.selfExe(), &cfg); err != nil { // numbered from initRootFd
			return nil, err
		}
	}
	conf, err := configFile(&cfg)
	if err != nil {
		closeAll(extra)
		return nil, err
	}
	return append([]*os.File{conf}, extra...), nil
}

// selfExe is the shim's binary on the host (the user namespace anchor runs it).
func (s *shim) selfExe() string {
	exe, err := os.Executable()
	if err != nil {
		return "/proc/self/exe"
	}
	return exe
}

// configFile is cfg as JSON in an anonymous file.
func configFile(cfg *Config) (*os.File, error) {
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode init configuration: %w", err)
	}
	fd, err := unix.MemfdCreate("config", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create init configuration: %w", err)
	}
	f := os.NewFile(uintptr(fd), "config")
	_, err = f.Write(data)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write init configuration: %w", err)
	}
	return f, nil
}

// startInit starts the init in the namespaces the spec names, puts it in the
// container's cgroup and lets it go on.
func (s *shim) startInit() error {
	var groups []uint32
	if s.cfg.PresetGroups {
		groups = append([]uint32{}, s.cfg.Spec.Process.User.AdditionalGids...)
	}
	if err := startInNamespaces(s.cmd, &s.cfg.Spec, groups); err != nil {
		return err
	}
	pid := []byte(strconv.Itoa(s.cmd.Process.Pid))
	for _, procs := range s.cfg.CgroupProcs {
		if err := os.WriteFile(procs, pid, 0o644); err != nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
			return fmt.Errorf("put the init in its cgroup: %w", err)
		}
	}
	if _, err := s.start.Write([]byte{1}); err != nil {
		return fmt.Errorf("let the init go on: %w", err)
	}
	return nil
}

// waitReady waits for the init's report and records the environment it ends with.
func (s *shim) waitReady() error {
	line, err := readLine(s.sync)
	if rest, ok := strings.CutPrefix(line, readyPrefix); ok && err == nil {
		var env []string
		if err := json.Unmarshal([]byte(rest), &env); err != nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
			return fmt.Errorf("container init reported a bad environment: %w", err)
		}
		return atomicfile.WriteJSON(filepath.Join(s.bundle, environFile), env)
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	if line == "" && err != nil {
		return fmt.Errorf("container init: %w", err)
	}
	return fmt.Errorf("container init: %s", trimError(line))
}

func trimError(line string) string {
	rest, _ := strings.CutPrefix(line, errorPrefix)
	return rest
}

// cloneFlags are the namespaces the init gets new: always a mount namespace, and
// each listed namespace that has no path to join (the cgroup namespace the init makes
// itself once it is in its cgroup).
func cloneFlags(spec *specs.Spec) uintptr {
	flags := uintptr(unix.CLONE_NEWNS)
	for t, flag := range map[specs.LinuxNamespaceType]uintptr{
		specs.PIDNamespace: unix.CLONE_NEWPID, specs.NetworkNamespace: unix.CLONE_NEWNET,
		specs.IPCNamespace: unix.CLONE_NEWIPC, specs.UTSNamespace: unix.CLONE_NEWUTS,
	} {
		if p, listed := namespacePath(spec, t); listed && p == "" {
			flags |= flag
		}
	}
	return flags
}

// startInNamespaces starts cmd inside the namespaces the spec gives paths for, with
// groups as its supplementary groups when not nil.
func startInNamespaces(cmd *exec.Cmd, spec *specs.Spec, groups []uint32) error {
	var paths []string
	for _, t := range []specs.LinuxNamespaceType{specs.IPCNamespace, specs.UTSNamespace,
		specs.NetworkNamespace, specs.PIDNamespace} {
		p, _ := namespacePath(spec, t)
		paths = append(paths, p)
	}
	return nsenter.StartWithGroups(cmd, groups, paths...)
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
	// Our own pipes, not Cmd's: Wait closes those as soon as the process ends, losing
	// what it wrote last if the copies had not read it yet.
	stdout, err := s.outputPipe(&s.cmd.Stdout)
	if err != nil {
		return err
	}
	stderr, err := s.outputPipe(&s.cmd.Stderr)
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

// outputPipe makes a pipe whose write end becomes *to in the init; the shim's copy of
// that end is closed once the init started, so the read end ends when every process
// holding the write end has.
func (s *shim) outputPipe(to *io.Writer) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create output pipe: %w", err)
	}
	*to = w
	s.childEnds = append(s.childEnds, w)
	s.closer = append(s.closer, r)
	return r, nil
}

func (s *shim) setupTerminal(w *logWriter) error {
	// The init's stdio stays /dev/null until it makes its terminal in the container.
	keep, give, err := consolePair()
	if err != nil {
		return err
	}
	s.console, s.consoleInit, s.logw = keep, give, w
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

// takeTerminal receives the terminal the init made and copies its output.
func (s *shim) takeTerminal() error {
	master, _, err := receiveTerminal(s.console)
	s.console.Close()
	if err != nil {
		return err
	}
	s.closer = append(s.closer, master)
	s.master = master
	if s.cfg.Stdin {
		s.stdin = master
	}
	s.copy(s.logw, Stdout, frameStdout, master)
	return nil
}

// wait waits for the init to end, lets its output drain, and records the exit status.
func (s *shim) wait() error {
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
	return atomicfile.WriteJSON(filepath.Join(s.bundle, exitFile), exit)
}

// bundlePath calls fn with a short name of path/name (unix socket names are limited to
// 108 bytes; the bundle's may be longer), through a descriptor of path.
func bundlePath(path, name string, fn func(string) error) error {
	dir, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(dir)
	return fn(fmt.Sprintf("/proc/self/fd/%d/%s", dir, name))
}

func listenControl(bundle string) (net.Listener, error) {
	var l *net.UnixListener
	err := bundlePath(bundle, controlSocket, func(p string) error {
		_ = os.Remove(p) // a dead shim's
		addr, err := net.ResolveUnixAddr("unix", p)
		if err != nil {
			return err
		}
		if l, err = net.ListenUnix("unix", addr); err != nil {
			return err
		}
		l.SetUnlinkOnClose(false) // the name held a descriptor number; Delete removes the file
		return os.Chmod(p, 0o600)
	})
	if err != nil {
		return nil, fmt.Errorf("listen for control: %w", err)
	}
	return l, nil
}

// dialControl connects to the shim of a bundle.
func dialControl(ctx context.Context, bundle string) (net.Conn, error) {
	var conn net.Conn
	err := bundlePath(bundle, controlSocket, func(p string) error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, "unix", p)
		return err
	})
	return conn, err
}

// serve answers control requests (protocol.go): reqStart releases the init. A second one gets
// the first one's answer: a daemon killed after it released the init, before it saved
// that, asks again after its restart.
func (s *shim) serve(l net.Listener) {
	var once sync.Once
	var started string
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
			case req == reqAttach:
				s.serveAttach(conn)
				conn = nil // the hub owns it now
				return
			case strings.HasPrefix(req, reqResize+" "):
				if err := s.resize(req); err != nil {
					fmt.Fprintf(conn, "%s%v\n", errorPrefix, err)
				} else {
					fmt.Fprintln(conn, answerOK)
				}
			case req == reqReopenLog:
				if err := s.reopenLog(); err != nil {
					fmt.Fprintf(conn, "%s%v\n", errorPrefix, err)
				} else {
					fmt.Fprintln(conn, answerOK)
				}
			case req == reqStart:
				s.starting.Lock() // the shim does not end before the answer is sent
				once.Do(func() { started = s.release() })
				fmt.Fprintln(conn, started)
				s.starting.Unlock()
			default:
				fmt.Fprintf(conn, "%sunknown request %q\n", errorPrefix, req)
			}
		}()
	}
}

// release lets the init execute the command and reports whether the exec worked.
func (s *shim) release() string {
	// The init's first byte (it is in its cgroup) was sent at create.
	if _, err := s.start.Write([]byte{1}); err != nil {
		return fmt.Sprintf("%srelease container: %v", errorPrefix, err)
	}
	s.start.Close()
	line, err := readLine(s.sync)
	s.sync.Close()
	if errors.Is(err, io.EOF) && line == "" {
		// The sync pipe closed on exec. The mark tells a daemon that restarts before
		// it saved the start that the container runs, and since when.
		if err := atomicfile.WriteJSON(filepath.Join(s.bundle, startedFile), time.Now()); err != nil {
			fmt.Fprintf(os.Stderr, "record the start: %v\n", err)
		}
		return answerOK
	}
	return errorPrefix + trimError(line)
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
