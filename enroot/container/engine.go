package container

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/diskusage"
	"github.com/enroot-cri/enroot-cri/internal/pidwatch"
	"github.com/enroot-cri/enroot-cri/internal/procs"
)

// Engine creates and runs containers through their shims. Bundles (configuration,
// exit status) live under StateDir, writable layers under RootDir, and each shim's
// own log under LogDir, where it outlives the bundle until Forget.
type Engine struct {
	StateDir string // volatile: /run/enroot-cri/containers
	RootDir  string // persistent: /var/lib/enroot-cri/containers
	LogDir   string // volatile: /run/enroot-cri/monitors
	Exe      string // the enroot-cri binary
	// ShimExe is the monitor binary (enroot-cri-shim); empty: Exe's own `shim`.
	ShimExe string
	// Sealed is a sealed in-memory copy of the binary (internal/sealed): what runs in a
	// container (its init, an exec's stage) runs from it, never from Exe.
	Sealed *os.File

	nsenterOnce sync.Once
	nsenterCopy *os.File
	nsenterErr  error
}

// FindShim finds the monitor binary, enroot-cri-shim: beside the daemon's binary exe (a
// build tree's bin/), else where the packages install it; empty when neither has it
// (the daemon's own `enroot-cri shim` then monitors containers).
func FindShim(exe string) string {
	for _, p := range []string{filepath.Join(filepath.Dir(exe), "enroot-cri-shim"), "/usr/libexec/enroot-cri/enroot-cri-shim"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Bundle is the directory holding a container's configuration and status.
func (e *Engine) Bundle(id string) string { return filepath.Join(e.StateDir, id) }

// Layer is the directory holding a container's writable layer.
func (e *Engine) Layer(id string) string { return filepath.Join(e.RootDir, id) }

// MonitorLog is the file the container's shim writes its own messages to (a Go panic,
// a failed copy of the container's output): kept after Delete, so that a monitor that
// ended early can be diagnosed, and removed by Forget.
func (e *Engine) MonitorLog(id string) string { return filepath.Join(e.LogDir, id+".log") }

// Forget removes what Delete keeps of a container: its monitor's log.
func (e *Engine) Forget(id string) error {
	if err := os.Remove(e.MonitorLog(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove monitor log of %s: %w", id, err)
	}
	return nil
}

// MonitorLogs lists the IDs of containers that have a monitor log.
func (e *Engine) MonitorLogs() ([]string, error) {
	entries, err := os.ReadDir(e.LogDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list monitor logs: %w", err)
	}
	var ids []string
	for _, en := range entries {
		if id, ok := strings.CutSuffix(en.Name(), ".log"); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Bundles lists the IDs of the containers that have a bundle or a writable layer.
func (e *Engine) Bundles() ([]string, error) {
	var ids []string
	for _, dir := range []string{e.StateDir, e.RootDir} {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		for _, en := range entries {
			if !slices.Contains(ids, en.Name()) {
				ids = append(ids, en.Name())
			}
		}
	}
	return ids, nil
}

// Create writes the bundle and starts the shim, which starts the container's init;
// it returns the init's PID once the root filesystem is ready and the init waits for
// Start. On failure nothing of the container remains.
func (e *Engine) Create(ctx context.Context, cfg *Config) (pid int, err error) {
	bundle, layer := e.Bundle(cfg.ID), e.Layer(cfg.ID)
	defer func() {
		if err != nil {
			_ = e.Delete(cfg.ID)
			_ = e.Forget(cfg.ID) // what it said is in err
		}
	}()
	cfg.UpperDir, cfg.WorkDir = filepath.Join(layer, "upper"), filepath.Join(layer, "work")
	for _, d := range []string{bundle, cfg.WorkDir, e.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 0, fmt.Errorf("create container directories: %w", err)
		}
	}
	// The overlay's root directory takes the upper directory's mode: every user must
	// be able to enter "/".
	if err := os.Mkdir(cfg.UpperDir, 0o755); err != nil {
		return 0, fmt.Errorf("create container directories: %w", err)
	}
	if err := writeConfig(bundle, cfg); err != nil {
		return 0, err
	}
	return e.startShim(ctx, cfg.ID, bundle)
}

func (e *Engine) startShim(ctx context.Context, id, bundle string) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("create shim pipe: %w", err)
	}
	defer r.Close()
	logf, err := os.OpenFile(e.MonitorLog(id), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		w.Close()
		return 0, fmt.Errorf("open shim log: %w", err)
	}
	defer logf.Close()
	exe := e.ShimExe
	if exe == "" {
		exe = e.Exe
	}
	cmd := exec.Command(exe, "shim", bundle)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w, e.Sealed}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("start shim: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reap it when it ends while we run
	if err := os.WriteFile(filepath.Join(bundle, shimPidFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		return 0, fmt.Errorf("record shim pid: %w", err)
	}
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		ch <- answer{strings.TrimSpace(line), err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return 0, fmt.Errorf("create container: %w", ctx.Err())
	}
	if rest, ok := strings.CutPrefix(a.line, answerOK+" "); ok {
		pid, err := strconv.Atoi(rest)
		if err == nil {
			return pid, os.WriteFile(filepath.Join(bundle, initPidFile), []byte(rest), 0o600)
		}
	}
	if rest, ok := strings.CutPrefix(a.line, errorPrefix); ok {
		return 0, errdefs.WithKind(errors.New(rest), errdefs.ErrFailedPrecondition)
	}
	if a.err != nil {
		return 0, fmt.Errorf("shim ended without an answer: %w; its log: %s", a.err, e.logTail(id))
	}
	return 0, fmt.Errorf("shim answered %q; its log: %s", a.line, e.logTail(id))
}

// logTail is the end of a monitor's log, for an error message.
func (e *Engine) logTail(id string) string {
	data, err := os.ReadFile(e.MonitorLog(id))
	if err != nil {
		return err.Error()
	}
	const keep = 2048
	if len(data) > keep {
		data = data[len(data)-keep:]
	}
	if s := strings.TrimSpace(string(data)); s != "" {
		return s
	}
	return "(empty)"
}

// Start releases the container's init into the user's command.
func (e *Engine) Start(ctx context.Context, id string) error {
	if err := e.control(ctx, id, reqStart); err != nil {
		return errdefs.WithKind(fmt.Errorf("start %s: %w", id, err), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// State is what the engine knows of a container's processes.
type State struct {
	InitPid   int
	ShimAlive bool
	StartedAt time.Time // set once the monitor released the command
	Exit      *Exit     // set once the first process has ended
}

// State reads a container's state from its bundle. A container without a bundle (the
// node rebooted) has no live shim and no exit record.
func (e *Engine) State(id string) State {
	bundle := e.Bundle(id)
	var st State
	st.InitPid, _ = readPid(filepath.Join(bundle, initPidFile))
	if shimPid, err := readPid(filepath.Join(bundle, shimPidFile)); err == nil {
		st.ShimAlive = isShim(shimPid, bundle)
	}
	if data, err := os.ReadFile(filepath.Join(bundle, startedFile)); err == nil {
		_ = json.Unmarshal(data, &st.StartedAt)
	}
	if data, err := os.ReadFile(filepath.Join(bundle, exitFile)); err == nil {
		var x Exit
		if json.Unmarshal(data, &x) == nil {
			st.Exit = &x
		}
	}
	return st
}

// running returns the state of a container whose first process runs, else an error.
func (e *Engine) running(id string) (State, error) {
	st := e.State(id)
	if st.Exit != nil || !st.ShimAlive || st.InitPid == 0 {
		return st, fmt.Errorf("container %s is not running: %w", id, errdefs.ErrFailedPrecondition)
	}
	return st, nil
}

// WatchShim has w report id when the container's shim ends (it records the exit
// first); pidwatch.ErrGone when it already has, or there is none.
func (e *Engine) WatchShim(w *pidwatch.Watcher, id string) error {
	bundle := e.Bundle(id)
	pid, err := readPid(filepath.Join(bundle, shimPidFile))
	if err != nil {
		return pidwatch.ErrGone
	}
	return w.Add(id, pid, func() bool { return isShim(pid, bundle) })
}

// Signal sends sig to the container's first process.
func (e *Engine) Signal(id string, sig syscall.Signal) error {
	st, err := e.running(id)
	if err != nil {
		return nil // nothing left to signal
	}
	if err := syscall.Kill(st.InitPid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s: %w", id, err)
	}
	return nil
}

// Wait waits until the container's first process has ended and its shim recorded it,
// or ctx ends.
func (e *Engine) Wait(ctx context.Context, id string) (*Exit, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		st := e.State(id)
		if st.Exit != nil {
			return st.Exit, nil
		}
		if !st.ShimAlive {
			return nil, fmt.Errorf("container %s has no shim and no exit record: %w", id, errdefs.ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Delete kills what remains of the container's processes and removes its bundle and
// writable layer; the monitor's log stays until Forget. Deleting a deleted container
// is fine.
func (e *Engine) Delete(id string) error {
	bundle := e.Bundle(id)
	shimPid, err := readPid(filepath.Join(bundle, shimPidFile))
	if errors.Is(err, os.ErrNotExist) {
		shimPid = findShim(bundle) // started, but the daemon was killed before it wrote shim.pid
	}
	if shimPid > 0 && isShim(shimPid, bundle) {
		// A killed init makes the shim record the exit and end; without init.pid (a
		// create cut off before the shim answered) there is no init to wait for: the
		// caller kills what is in the container's cgroup.
		if pid, err := readPid(filepath.Join(bundle, initPidFile)); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(shimPid, bundle, 5*time.Second)
		}
		_ = syscall.Kill(shimPid, syscall.SIGKILL)
		waitGone(shimPid, bundle, time.Second)
	}
	if err := os.RemoveAll(bundle); err != nil {
		return fmt.Errorf("remove bundle of %s: %w", id, err)
	}
	if err := os.RemoveAll(e.Layer(id)); err != nil {
		return fmt.Errorf("remove writable layer of %s: %w", id, err)
	}
	return nil
}

func waitGone(pid int, bundle string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for isShim(pid, bundle) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// findShim looks through /proc for the shim of bundle; 0 when there is none.
func findShim(bundle string) int {
	if _, err := os.Stat(bundle); err != nil {
		return 0
	}
	return procs.Find(func(pid int) bool { return isShim(pid, bundle) })
}

func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// isShim reports whether pid is alive and is the shim of bundle (a reused pid is not).
func isShim(pid int, bundle string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 3 || args[1] != "shim" || args[2] != bundle {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie (state Z) has ended; it waits only to be reaped.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// LayerUsage is the disk use of a container's writable layer and its directory.
func (e *Engine) LayerUsage(id string) (dir string, u diskusage.Usage, err error) {
	dir = filepath.Join(e.Layer(id), "upper")
	u, err = diskusage.Of(dir)
	return dir, u, err
}
