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
	"github.com/enroot-cri/enroot-cri/internal/procs"
)

// Options say which namespaces a sandbox gets new (false: the host's).
type Options struct {
	Net, IPC, UTS bool
	// PID asks for a shared PID namespace with a holder process as its PID 1.
	PID      bool
	Hostname string            // set in the new UTS namespace
	Sysctls  map[string]string // written inside the new namespaces
	// Exe is the path of a sealed copy of the enroot-cri binary (internal/sealed),
	// which runs the PID holder (`enroot-cri pod-holder`).
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
// sandbox's other namespaces and a mount namespace of its own.
func (sb *Sandbox) startHolder(exe string) error {
	cmd := exec.Command(exe, "pod-holder", sb.holderTag())
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS}
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
	return err == nil && strings.Contains(string(cmdline), "pod-holder\x00"+sb.holderTag())
}

// Leftover is what remains of a sandbox whose record was never written (a create cut
// off by a crash): its pinned namespaces and its PID holder, found by its tag in /proc.
func Leftover(dir string) *Sandbox {
	sb := &Sandbox{Dir: dir}
	for name, field := range map[string]*string{"net": &sb.NetNS, "ipc": &sb.IPCNS, "uts": &sb.UTSNS} {
		if p := filepath.Join(dir, "ns", name); isNsfs(p) {
			*field = p
		}
	}
	sb.HolderPid = procs.Find(func(pid int) bool {
		probe := Sandbox{Dir: dir, HolderPid: pid}
		return probe.HolderAlive()
	})
	if sb.HolderPid != 0 {
		sb.PIDNS = fmt.Sprintf("/proc/%d/ns/pid", sb.HolderPid)
	}
	return sb
}

// holderTag names the sandbox on its holder's command line, which the pod's
// containers see: its ID, not a host path.
func (sb *Sandbox) holderTag() string { return filepath.Base(sb.Dir) }

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

// holderUID is the unprivileged user the PID holder runs as (nobody).
const holderUID = 65534

// RunHolder is `enroot-cri pod-holder POD`: PID 1 of a sandbox's PID namespace. Every
// container of the pod can reach it (through /proc/1), so it holds nothing worth
// reaching: an empty read-only root in a mount namespace of its own, user nobody, no
// capabilities, no_new_privs, not dumpable. It reaps orphans until it is told to stop.
func RunHolder() error {
	if err := isolateHolder(); err != nil {
		return err
	}
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

// isolateHolder gives the holder its empty root and drops every privilege.
func isolateHolder() error {
	if err := emptyRoot(); err != nil {
		return err
	}
	// Privileges are per thread: the calls reach every thread of this process.
	for c := uintptr(0); c <= 63; c++ {
		if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0); errno != 0 && errno != unix.EINVAL {
			return fmt.Errorf("drop capability %d: %w", c, errno)
		}
	}
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); errno != 0 {
		return fmt.Errorf("set no_new_privs: %w", errno)
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop groups: %w", err)
	}
	if err := syscall.Setgid(holderUID); err != nil {
		return fmt.Errorf("set gid: %w", err)
	}
	if err := syscall.Setuid(holderUID); err != nil { // clears every capability
		return fmt.Errorf("set uid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make not dumpable: %w", err)
	}
	return nil
}

// emptyRoot pivots the holder's mount namespace into an empty read-only tmpfs and
// detaches everything else: /proc/1/root shows nothing of the host.
func emptyRoot() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	const dir = "/tmp"
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0555"); err != nil {
		return fmt.Errorf("mount empty root: %w", err)
	}
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("make root read-only: %w", err)
	}
	return nil
}
