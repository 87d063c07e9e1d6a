package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/nsenter"
)

// Options say which namespaces a sandbox gets new (false: the host's).
type Options struct {
	Net, IPC, UTS bool
	// PID asks for a shared PID namespace with a holder process as its PID 1.
	PID      bool
	Hostname string            // set in the new UTS namespace
	Sysctls  map[string]string // written inside the new namespaces
	// Exe is the enroot-cri binary, which runs the PID holder (`enroot-cri pod-holder`).
	Exe string
}

// Sandbox is a created sandbox: the paths containers join.
type Sandbox struct {
	Dir       string `json:"dir"`
	NetNS     string `json:"netns,omitempty"` // empty: the host's
	IPCNS     string `json:"ipcns,omitempty"`
	UTSNS     string `json:"utsns,omitempty"`
	PIDNS     string `json:"pidns,omitempty"`
	HolderPid int    `json:"holder_pid,omitempty"`
	Shm       string `json:"shm"` // the /dev/shm to bind into containers
}

// shmSize is the size of a sandbox's /dev/shm, as Docker and containerd give.
const shmSize = "size=65536k"

// Create makes the sandbox's namespaces and mounts under dir. On failure nothing of it
// remains.
func Create(dir string, opts Options) (_ *Sandbox, err error) {
	sb := &Sandbox{Dir: dir}
	defer func() {
		if err != nil {
			_ = sb.Destroy()
		}
	}()
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox directory: %w", err)
	}
	if err := pinNamespaces(sb, opts); err != nil {
		return nil, err
	}
	if err := sb.mountShm(opts.IPC); err != nil {
		return nil, err
	}
	if opts.PID {
		if err := sb.startHolder(opts.Exe); err != nil {
			return nil, err
		}
	}
	return sb, nil
}

// pinNamespaces unshares the new namespaces on a dedicated OS thread, configures them
// there (hostname, loopback, sysctls) and pins them with bind mounts. The thread is
// never returned to the Go scheduler: it ends with its goroutine.
func pinNamespaces(sb *Sandbox, opts Options) error {
	var flags int
	pins := map[string]*string{}
	if opts.Net {
		flags |= unix.CLONE_NEWNET
		pins["net"] = &sb.NetNS
	}
	if opts.IPC {
		flags |= unix.CLONE_NEWIPC
		pins["ipc"] = &sb.IPCNS
	}
	if opts.UTS {
		flags |= unix.CLONE_NEWUTS
		pins["uts"] = &sb.UTSNS
	}
	if flags == 0 {
		return checkHostSysctls(opts.Sysctls)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- configureThread(sb, opts, flags, pins)
	}()
	return <-errc
}

func configureThread(sb *Sandbox, opts Options, flags int, pins map[string]*string) error {
	if err := unix.Unshare(flags); err != nil {
		return fmt.Errorf("create namespaces: %w", err)
	}
	if opts.UTS && opts.Hostname != "" {
		if err := unix.Sethostname([]byte(opts.Hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", opts.Hostname, err)
		}
	}
	if opts.Net {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	for key, value := range opts.Sysctls {
		if err := checkSysctl(key, opts); err != nil {
			return err
		}
		file := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if err := os.WriteFile(file, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
		}
	}
	self := fmt.Sprintf("/proc/%d/task/%d/ns", os.Getpid(), unix.Gettid())
	for ns, field := range pins {
		pin := filepath.Join(sb.Dir, "ns", ns)
		if err := os.WriteFile(pin, nil, 0o600); err != nil {
			return fmt.Errorf("create %s namespace pin: %w", ns, err)
		}
		if err := unix.Mount(filepath.Join(self, ns), pin, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin %s namespace: %w", ns, err)
		}
		*field = pin
	}
	return nil
}

// loopbackUp brings up lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	return nil
}

// checkSysctl allows only sysctls that belong to a namespace the sandbox has of its own.
func checkSysctl(key string, opts Options) error {
	switch {
	case strings.HasPrefix(key, "net.") && opts.Net:
		return nil
	case (strings.HasPrefix(key, "kernel.shm") || strings.HasPrefix(key, "kernel.msg") ||
		key == "kernel.sem" || strings.HasPrefix(key, "fs.mqueue.")) && opts.IPC:
		return nil
	}
	return &SysctlError{Key: key}
}

func checkHostSysctls(sysctls map[string]string) error {
	for key := range sysctls {
		return &SysctlError{Key: key}
	}
	return nil
}

// SysctlError is a sysctl the sandbox cannot set without changing the host.
type SysctlError struct{ Key string }

func (e *SysctlError) Error() string {
	return fmt.Sprintf("sysctl %q is not namespaced for this pod: allowed are net.* with a pod network "+
		"namespace, and kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* with a pod IPC namespace", e.Key)
}

// mountShm gives the sandbox its own /dev/shm, or the host's with the host IPC namespace.
func (sb *Sandbox) mountShm(private bool) error {
	if !private {
		sb.Shm = "/dev/shm"
		return nil
	}
	shm := filepath.Join(sb.Dir, "shm")
	if err := os.MkdirAll(shm, 0o755); err != nil {
		return fmt.Errorf("create shm: %w", err)
	}
	if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,"+shmSize); err != nil {
		return fmt.Errorf("mount shm: %w", err)
	}
	sb.Shm = shm
	return nil
}

// startHolder starts the PID holder, PID 1 of the sandbox's new PID namespace, in the
// sandbox's other namespaces.
func (sb *Sandbox) startHolder(exe string) error {
	cmd := exec.Command(exe, "pod-holder", sb.Dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_NEWPID}
	if err := nsenter.Start(cmd, sb.IPCNS, sb.UTSNS, sb.NetNS); err != nil {
		return fmt.Errorf("start PID holder: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	sb.HolderPid = cmd.Process.Pid
	sb.PIDNS = fmt.Sprintf("/proc/%d/ns/pid", sb.HolderPid)
	return nil
}

// HolderAlive reports whether the sandbox's PID holder still runs.
func (sb *Sandbox) HolderAlive() bool {
	if sb.HolderPid == 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(sb.HolderPid) + "/cmdline")
	return err == nil && strings.Contains(string(cmdline), "pod-holder\x00"+sb.Dir)
}

// Pinned reports whether the sandbox's namespace pins are still in place (they are
// not after a reboot).
func (sb *Sandbox) Pinned() bool {
	for _, p := range []string{sb.NetNS, sb.IPCNS, sb.UTSNS} {
		if p != "" && !isNsfs(p) {
			return false
		}
	}
	return true
}

func isNsfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// StopHolder ends the PID holder (and with it every process left in the PID namespace).
func (sb *Sandbox) StopHolder() {
	if sb.HolderAlive() {
		_ = syscall.Kill(sb.HolderPid, syscall.SIGKILL)
		for i := 0; i < 500 && sb.HolderAlive(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Destroy stops the holder, unpins the namespaces, unmounts shm and removes the
// directory. Destroying a destroyed sandbox is fine.
func (sb *Sandbox) Destroy() error {
	sb.StopHolder()
	var errs []error
	for _, p := range []string{filepath.Join(sb.Dir, "ns", "net"), filepath.Join(sb.Dir, "ns", "ipc"),
		filepath.Join(sb.Dir, "ns", "uts"), filepath.Join(sb.Dir, "shm")} {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	if err := os.RemoveAll(sb.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RunHolder is `enroot-cri pod-holder DIR`: PID 1 of a sandbox's PID namespace. It
// reaps orphans until it is told to stop.
func RunHolder() error {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			return nil
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return nil
}
