package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/sealed"
)

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

// execSpec is what the exec helper and stage apply: the container's cgroup and
// namespaces, its user, groups, working directory, environment and security. The
// daemon builds it from its own record of the container, never from a file the
// container can write.
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
	// EnrootFilter is Enroot's seccomp filter, which the container's processes have.
	EnrootFilter bool `json:"enroot_filter,omitempty"`
	// PresetGroups: the helper sets Groups before it enters the user namespace, which
	// denies setgroups (as the container's init got them). AsUser: nsenter itself
	// takes the user's IDs (the namespace maps only that user, so the stage runs
	// without capabilities).
	PresetGroups bool     `json:"preset_groups,omitempty"`
	Groups       []uint32 `json:"groups,omitempty"`
	AsUser       bool     `json:"as_user,omitempty"`
	Terminal     bool     `json:"terminal,omitempty"`
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
	spec, err := e.execSpec(id, st.InitPid, opts)
	if err != nil {
		return 0, err
	}
	spec.Terminal = opts.Tty
	nsenter, err := e.nsenter()
	if err != nil {
		return 0, err
	}
	specFile, err := specFile(spec)
	if err != nil {
		return 0, err
	}
	defer specFile.Close()
	cmd := exec.Command(sealed.Path(e.Sealed), "exec-helper")
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{e.Sealed, specFile, nsenter}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return runExec(ctx, cmd, opts)
}

// nsenter returns a sealed copy of util-linux's nsenter, made once: its child runs in
// the container's PID namespace before it becomes the exec stage, and the container
// must not reach the host's binary through /proc/PID/exe (CVE-2019-5736).
func (e *Engine) nsenter() (*os.File, error) {
	e.nsenterOnce.Do(func() {
		path, err := exec.LookPath("nsenter")
		if err != nil {
			e.nsenterErr = fmt.Errorf("exec needs nsenter from util-linux: %w", errdefs.WithKind(err, errdefs.ErrFailedPrecondition))
			return
		}
		e.nsenterCopy, e.nsenterErr = sealed.Copy(path)
	})
	return e.nsenterCopy, e.nsenterErr
}

// execSpec describes an exec from the container's configuration in its bundle, which
// only the daemon and the shim write.
func (e *Engine) execSpec(id string, target int, opts ExecOptions) (*execSpec, error) {
	cfg, err := readConfig(e.Bundle(id))
	if err != nil {
		return nil, err
	}
	env := cfg.Spec.Process.Env
	if data, err := os.ReadFile(filepath.Join(e.Bundle(id), environFile)); err == nil {
		// What the command started with, the hooks' additions included.
		if err := json.Unmarshal(data, &env); err != nil {
			return nil, fmt.Errorf("read container environment: %w", err)
		}
	}
	spec := &execSpec{Security: securityOf(&cfg.Spec), EnrootFilter: cfg.EnrootFilter,
		Args: opts.Args, Env: env, Cwd: cfg.Spec.Process.Cwd, User: cfg.Spec.Process.User,
		Target: target, Procs: opts.CgroupProcs, Ns: nsenterFlags(&cfg.Spec),
	}
	if cfg.PresetGroups {
		spec.PresetGroups, spec.AsUser = true, spec.User.UID != 0
		spec.Groups = append([]uint32{}, spec.User.AdditionalGids...)
	}
	return spec, nil
}

// specFile writes spec to an anonymous file for the helper and the stage.
func specFile(spec *execSpec) (*os.File, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode exec: %w", err)
	}
	fd, err := unix.MemfdCreate("exec", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create exec description: %w", err)
	}
	f := os.NewFile(uintptr(fd), "exec")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("write exec description: %w", err)
	}
	return f, nil
}

// readExecSpec reads the exec's description from its descriptor.
func readExecSpec() (*execSpec, error) {
	f := os.NewFile(execSpecFd, "exec")
	var spec execSpec
	if err := json.NewDecoder(io.NewSectionReader(f, 0, math.MaxInt64)).Decode(&spec); err != nil {
		return nil, fmt.Errorf("decode exec: %w", err)
	}
	return &spec, nil
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
	var console *os.File
	if opts.Tty {
		// The stage makes the terminal in the container's devpts and sends its master.
		keep, give, err := consolePair()
		if err != nil {
			return 0, err
		}
		defer keep.Close()
		console = keep
		cmd.ExtraFiles = append(cmd.ExtraFiles, give)
		defer give.Close()
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start exec: %w", err)
	}
	copies := make(chan struct{})
	stage := 0 // with a terminal, the command leads a session of its own
	if console != nil {
		cmd.ExtraFiles[len(cmd.ExtraFiles)-1].Close() // only the child holds it now
		master, pid, err := receiveTerminal(console)
		if err != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			return 0, err
		}
		stage = pid
		defer master.Close()
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
		if stage > 0 {
			_ = syscall.Kill(-stage, syscall.SIGKILL)
		}
		killed := <-done
		waitGroupGone(cmd.Process.Pid)
		if stage > 0 {
			waitGroupGone(stage)
		}
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
// container's namespaces and root and runs the exec stage from the sealed binary
// (descriptor 3) inside them.
func RunExecHelper() error {
	spec, err := readExecSpec()
	if err != nil {
		return err
	}
	self := []byte(strconv.Itoa(os.Getpid()))
	for _, procs := range spec.Procs {
		if err := os.WriteFile(procs, self, 0o644); err != nil {
			return fmt.Errorf("enter the container's cgroup: %w", err)
		}
	}
	args := append([]string{"nsenter", "--target", strconv.Itoa(spec.Target)}, spec.Ns...)
	args = append(args, "--root", "--wd")
	if spec.PresetGroups {
		groups := make([]int, len(spec.Groups))
		for i, g := range spec.Groups {
			groups[i] = int(g)
		}
		// Kept in a namespace that denies setgroups, as the container's init has them.
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("set supplementary groups: %w", err)
		}
	}
	if spec.AsUser {
		args = append(args, "--setuid", strconv.Itoa(int(spec.User.UID)), "--setgid", strconv.Itoa(int(spec.User.GID)))
	}
	args = append(args, "--", fmt.Sprintf("/proc/self/fd/%d", execBinaryFd), "exec-stage")
	return unix.Exec(fmt.Sprintf("/proc/self/fd/%d", execNsenterFd), args, []string{})
}

// RunExecStage is `enroot-cri exec-stage`, running inside the container from the
// sealed binary: it takes the container's user, groups, working directory, environment
// and security, and executes the command.
func RunExecStage() error {
	spec, err := readExecSpec()
	if err != nil {
		return err
	}
	unix.Close(execSpecFd)
	runtime.LockOSThread() // privileges are per thread; this one executes the command
	if err := joinNewSessionKeyring(); err != nil {
		return err
	}
	if spec.EnrootFilter {
		if spec.AsUser { // no capabilities: loading a filter needs no_new_privs
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				return fmt.Errorf("set no_new_privs: %w", err)
			}
		}
		if err := loadEnrootFilter(); err != nil {
			return err
		}
	}
	path, err := lookPath(spec.Args, spec.Env)
	if err != nil {
		return err
	}
	if !spec.AsUser {
		if err := becomeUser(spec.Security, spec.User, spec.PresetGroups); err != nil {
			return err
		}
	}
	if spec.Terminal {
		if err := takeTerminal(execConsoleFd); err != nil {
			return err
		}
	}
	if err := enterWorkingDir(spec.Cwd); err != nil {
		return err
	}
	return execute(spec.Security, path, spec.Args, spec.Env)
}

// waitGroupGone waits (up to 5 s) until no process of process group pgid is left, so
// that a killed exec is gone when the call returns.
func waitGroupGone(pgid int) {
	for i := 0; i < 500 && syscall.Kill(-pgid, 0) == nil; i++ {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
}
