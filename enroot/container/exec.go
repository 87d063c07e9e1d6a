package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// execSpecEnv carries the process description from the daemon to the exec stage that
// runs inside the container.
const execSpecEnv = "ENROOT_CRI_EXEC"

// TerminalSize is a terminal's width and height in characters.
type TerminalSize struct{ Width, Height uint16 }

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	Args   []string
	Tty    bool
	Stdin  io.Reader // nil: no input
	Stdout io.Writer
	Stderr io.Writer // ignored with Tty: the terminal carries both
	Resize <-chan TerminalSize
	// CgroupProcs are the cgroup.procs files of the container's cgroup; the process
	// enters them before it enters the container.
	CgroupProcs []string
}

// execSpec is what the in-container stage applies before it executes the command: the
// container's own user, groups, working directory and environment.
type execSpec struct {
	Args   []string   `json:"args"`
	Env    []string   `json:"env"`
	Cwd    string     `json:"cwd"`
	User   specs.User `json:"user"`
	Target int        `json:"target"`
	Procs  []string   `json:"procs"`
	Ns     []string   `json:"ns"` // nsenter flags for the namespaces to enter
	// Security is the container's: an exec never has more privilege than it.
	Security processSecurity `json:"security"`
	// Nsenter is util-linux\'s nsenter, found on the daemon\'s PATH.
	Nsenter string       `json:"nsenter"`
	Linux   *specs.Linux `json:"-"`
}

// Exec runs a process in a running container, with the container's namespaces,
// cgroup, user, groups, working directory and environment, and returns its exit code.
// ctx ending kills it.
func (e *Engine) Exec(ctx context.Context, id string, opts ExecOptions) (int, error) {
	st, err := e.running(id)
	if err != nil {
		return 0, err
	}
	if len(opts.Args) == 0 {
		return 0, fmt.Errorf("cmd is empty: %w", errdefs.ErrInvalidArgument)
	}
	cfg, err := readConfig(e.Bundle(id))
	if err != nil {
		return 0, err
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return 0, fmt.Errorf("exec needs nsenter from util-linux: %w", errdefs.WithKind(err, errdefs.ErrFailedPrecondition))
	}
	env := cfg.Spec.Process.Env
	if f, err := os.Open(filepath.Join(e.Bundle(id), "environ")); err == nil {
		// The hooks' final word on the environment.
		env, err = enroot.ParseEnviron(f, func(string) (string, bool) { return "", false })
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("read container environment: %w", err)
		}
	}
	spec := execSpec{Nsenter: nsenter, Security: securityOf(&cfg.Spec),
		Args: opts.Args, Env: env, Cwd: cfg.Spec.Process.Cwd, User: cfg.Spec.Process.User,
		Target: st.InitPid, Procs: opts.CgroupProcs, Ns: nsenterFlags(&cfg.Spec),
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return 0, fmt.Errorf("encode exec: %w", err)
	}
	exe, err := os.Open(e.Exe) // run inside the container through /proc/self/fd/3
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", e.Exe, err)
	}
	defer exe.Close()
	cmd := exec.Command(e.Exe, "exec-helper")
	cmd.Env = []string{execSpecEnv + "=" + string(data)}
	cmd.ExtraFiles = []*os.File{exe}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return runExec(ctx, cmd, opts)
}

// nsenterFlags lists the nsenter options for the namespaces the container has of its
// own or shares with its pod (the host's are entered too: entering one's own namespace
// changes nothing).
func nsenterFlags(spec *specs.Spec) []string {
	flags := []string{"--mount", "--uts", "--ipc", "--net"}
	if _, listed := namespacePath(spec, specs.PIDNamespace); listed {
		flags = append(flags, "--pid")
	}
	if _, listed := namespacePath(spec, specs.CgroupNamespace); listed {
		flags = append(flags, "--cgroup")
	}
	if _, listed := namespacePath(spec, specs.UserNamespace); listed {
		flags = append(flags, "--user")
	}
	return flags
}

func runExec(ctx context.Context, cmd *exec.Cmd, opts ExecOptions) (int, error) {
	var master *os.File
	if opts.Tty {
		m, slave, err := openPty()
		if err != nil {
			return 0, err
		}
		defer m.Close()
		master = m
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
		defer slave.Close()
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start exec: %w", err)
	}
	copies := make(chan struct{})
	if master != nil {
		cmd.Stdin.(*os.File).Close() // the slave: only the child holds it now
		go resizeLoop(master, opts.Resize)
		if opts.Stdin != nil {
			go func() { _, _ = io.Copy(master, opts.Stdin) }()
		}
		go func() { _, _ = io.Copy(opts.Stdout, master); close(copies) }()
	} else {
		close(copies)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its session: nsenter and the command
		killed := <-done
		waitGroupGone(cmd.Process.Pid)
		<-copies
		return 0, fmt.Errorf("exec: %w", errors.Join(ctx.Err(), killed))
	}
	<-copies
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	default:
		return 0, fmt.Errorf("exec: %w", err)
	}
}

func resizeLoop(master *os.File, sizes <-chan TerminalSize) {
	for s := range sizes {
		_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: s.Height, Col: s.Width})
	}
}

// RunExecHelper is `enroot-cri exec-helper`, started by the daemon on the host: it
// moves itself into the container's cgroup, then becomes nsenter, which enters the
// container's namespaces and root and runs the exec stage from the daemon's binary
// (descriptor 3) inside them.
func RunExecHelper() error {
	var spec execSpec
	if err := json.Unmarshal([]byte(os.Getenv(execSpecEnv)), &spec); err != nil {
		return fmt.Errorf("decode exec: %w", err)
	}
	self := []byte(strconv.Itoa(os.Getpid()))
	for _, procs := range spec.Procs {
		if err := os.WriteFile(procs, self, 0o644); err != nil {
			return fmt.Errorf("enter the container's cgroup: %w", err)
		}
	}
	args := append([]string{"nsenter", "--target", strconv.Itoa(spec.Target)}, spec.Ns...)
	args = append(args, "--root", "--wd", "--", "/proc/self/fd/3", "exec-stage")
	return unix.Exec(spec.Nsenter, args, os.Environ())
}

// RunExecStage is `enroot-cri exec-stage`, running inside the container: it takes the
// container's user, groups, working directory and environment, and executes the command.
func RunExecStage() error {
	var spec execSpec
	if err := json.Unmarshal([]byte(os.Getenv(execSpecEnv)), &spec); err != nil {
		return fmt.Errorf("decode exec: %w", err)
	}
	unix.CloseOnExec(3)
	runtime.LockOSThread() // privileges are per thread; this one executes the command
	path, err := lookPath(spec.Args, spec.Env)
	if err != nil {
		return err
	}
	if err := spec.Security.applyBeforeUser(); err != nil {
		return err
	}
	if err := setUser(spec.User); err != nil {
		return err
	}
	if err := spec.Security.applyAfterUser(); err != nil {
		return err
	}
	if err := os.Chdir(spec.Cwd); err != nil {
		return fmt.Errorf("enter working directory %s: %w", spec.Cwd, err)
	}
	if err := spec.Security.applyLast(); err != nil {
		return err
	}
	return unix.Exec(path, spec.Args, spec.Env)
}

// waitGroupGone waits (up to 5 s) until no process of process group pgid is left, so
// that a killed exec is gone when the call returns.
func waitGroupGone(pgid int) {
	for i := 0; i < 500 && syscall.Kill(-pgid, 0) == nil; i++ {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
}
