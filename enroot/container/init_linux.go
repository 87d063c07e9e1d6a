package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/inroot"
)

// Descriptors the shim hands the container's init.
const (
	initSyncFd  = 3 // init writes "ready\n" or "error: …\n"; closes on exec
	initStartFd = 4 // init reads one byte: start now
	// With a user namespace: the bundle directory, and the ID-mapped root to attach.
	initBundleFd = 5
	initRootFd   = 6
)

// defaultPath is the PATH used to find the command when the container sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RunInit is `enroot-cri init BUNDLE`: the container's first process. The shim starts
// it in a new mount namespace (and PID namespace, or the pod's), already inside the
// pod's network, IPC and UTS namespaces. It builds the root filesystem, reports ready,
// waits for the start signal and executes the command. It returns only on failure.
func RunInit(bundle string) error {
	// Capabilities, the bounding set, no_new_privs and seccomp are per thread: all of
	// them are set on this thread, which then executes the command.
	runtime.LockOSThread()
	sync := os.NewFile(initSyncFd, "sync")
	if strings.HasPrefix(bundle, "/proc/self/fd/") {
		// In a user namespace the bundle is a descriptor; hooks, our children, reach it
		// through this process (the host's /proc is still mounted here).
		if self, err := os.Readlink("/proc/self"); err == nil {
			bundle = "/proc/" + self + strings.TrimPrefix(bundle, "/proc/self")
		}
	}
	err := prepareAndWait(bundle, sync)
	// Only reached on failure: tell the shim why.
	fmt.Fprintf(sync, "error: %v\n", err)
	return err
}

func prepareAndWait(bundle string, sync *os.File) error {
	// The sync pipe closes when exec succeeds: that is how the shim learns it did.
	unix.CloseOnExec(initSyncFd)
	unix.CloseOnExec(initBundleFd) // in a user namespace, the bundle: never the command's
	cfg, err := readConfig(bundle)
	if err != nil {
		return err
	}
	spec := &cfg.Spec
	if err := setupRootfs(bundle, cfg); err != nil {
		return err
	}
	if err := setOOMScore(spec.Process.OOMScoreAdj); err != nil {
		return err
	}
	if cfg.Enroot != nil && cfg.Enroot.RCLocal {
		spec.Process.Args = withRCLocal(spec.Process.Args)
	}
	path, err := lookPath(spec.Process.Args, spec.Process.Env)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(spec.Process.Cwd, 0o755); err != nil {
		return fmt.Errorf("create working directory %s: %w", spec.Process.Cwd, err)
	}
	sec := securityOf(spec)
	if cfg.RemapRoot {
		if err := loadRemapRootFilter(); err != nil {
			return err
		}
	}
	if err := sec.applyBeforeUser(); err != nil {
		return err
	}
	if err := setUser(spec.Process.User); err != nil {
		return err
	}
	if err := sec.applyAfterUser(); err != nil {
		return err
	}
	if err := os.Chdir(spec.Process.Cwd); err != nil {
		return fmt.Errorf("enter working directory %s: %w", spec.Process.Cwd, err)
	}
	if _, err := sync.WriteString("ready\n"); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	start := os.NewFile(initStartFd, "start")
	if _, err := io.ReadFull(start, make([]byte, 1)); err != nil {
		return fmt.Errorf("wait for start: %w", err)
	}
	start.Close()
	if err := sec.applyLast(); err != nil {
		return err
	}
	if err := unix.Exec(path, spec.Process.Args, spec.Process.Env); err != nil {
		return fmt.Errorf("exec %s: %w", spec.Process.Args[0], err)
	}
	return nil
}

// setupRootfs mounts the overlay root, the configured mounts and devices, and pivots
// into it.
func setupRootfs(bundle string, cfg *Config) error {
	// Host mounts reach the container; the container's reach the host only through a
	// bidirectional mount, and then only inside it.
	propagation := uintptr(unix.MS_REC | unix.MS_SLAVE)
	if cfg.SharedRoot {
		propagation = unix.MS_REC | unix.MS_SHARED
	}
	if err := unix.Mount("", "/", "", propagation, ""); err != nil {
		return fmt.Errorf("set mount propagation: %w", err)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	userns := len(cfg.Spec.Linux.UIDMappings) > 0
	if userns {
		// The bundle is the host's, out of this mount namespace's reach for mounts: the
		// ID-mapped root goes on a private tmpfs of this namespace instead.
		var err error
		if rootfs, err = attachIDMappedRoot(); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(rootfs, 0o755); err != nil {
			return fmt.Errorf("create rootfs: %w", err)
		}
		// A private mount under the root keeps everything mounted into it (overlay,
		// /proc, binds) from propagating anywhere, and lets pivot_root work.
		if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind rootfs: %w", err)
		}
		if err := unix.Mount("", rootfs, "", unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make rootfs private: %w", err)
		}
		overlay := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", cfg.Spec.Root.Path, cfg.UpperDir, cfg.WorkDir)
		if err := unix.Mount("overlay", rootfs, "overlay", 0, overlay); err != nil {
			return fmt.Errorf("mount overlay root (%s): %w", overlay, err)
		}
	}
	rootfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer unix.Close(rootfd)
	for _, v := range cfg.Volumes {
		fd, err := inroot.MkdirAll(rootfd, v, 0o755)
		if err != nil {
			return fmt.Errorf("create volume %s: %w", v, err)
		}
		unix.Close(fd)
	}
	for i, m := range cfg.Spec.Mounts {
		srcFd := -1
		if fd, ok := cfg.MountFds[i]; ok {
			srcFd = fd
		}
		if err := mountInto(rootfd, m, srcFd); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Source, m.Destination, err)
		}
	}
	if cfg.Enroot != nil {
		env, err := applyEnroot(rootfd, rootfs, bundle, cfg.Enroot, cfg.Spec.Process.Env)
		if err != nil {
			return err
		}
		cfg.Spec.Process.Env = env
	}
	if err := makeDevices(rootfd, cfg.Spec.Linux, userns, cfg.DeviceSources); err != nil {
		return err
	}
	if l := cfg.Spec.Linux; l != nil {
		if err := maskPaths(rootfd, l.MaskedPaths); err != nil {
			return err
		}
		if err := readonlyPaths(rootfd, l.ReadonlyPaths); err != nil {
			return err
		}
	}
	if cfg.Spec.Root.Readonly {
		if err := unix.Mount("", rootfs, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("make root read-only: %w", err)
		}
	}
	return pivot(rootfs)
}

// mountInto mounts m at its destination inside the root, resolving the destination
// inside the root so that an image's symlinks cannot redirect it.
func mountInto(rootfd int, m specs.Mount, srcFd int) error {
	opts := parseMountOptions(m.Type, m.Options)
	var target int
	var err error
	if opts.bind {
		var st unix.Stat_t
		if srcFd >= 0 {
			err = unix.Fstat(srcFd, &st)
		} else {
			err = unix.Stat(m.Source, &st)
		}
		if err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			target, err = inroot.MkdirAll(rootfd, m.Destination, 0o755)
		} else {
			target, err = inroot.CreateFile(rootfd, m.Destination)
		}
	} else {
		target, err = inroot.MkdirAll(rootfd, m.Destination, 0o755)
	}
	if err != nil {
		return err
	}
	dest := inroot.ProcPath(target)
	switch {
	case opts.bind && srcFd >= 0:
		// A user namespace may not reach the host path: the shim opened it.
		// The target by descriptor: move_mount refuses a /proc/self/fd path.
		err = unix.MoveMount(srcFd, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	case opts.bind:
		err = unix.Mount(m.Source, dest, "", opts.flags&^unix.MS_RDONLY, "")
	default:
		err = unix.Mount(m.Source, dest, m.Type, opts.flags, opts.dataString())
	}
	unix.Close(target)
	if err != nil {
		return err
	}
	// The descriptor named the directory under the new mount; reopen to reach the mount.
	mounted, err := inroot.OpenPath(rootfd, m.Destination)
	if err != nil {
		return err
	}
	defer unix.Close(mounted)
	dest = inroot.ProcPath(mounted)
	if opts.bind && opts.flags&^(unix.MS_BIND|unix.MS_REC) != 0 {
		// Bind mounts take ro, nosuid and friends only on a remount.
		if err := unix.Mount("", dest, "", opts.flags&^unix.MS_REC|unix.MS_REMOUNT|unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("remount: %w", err)
		}
	}
	for _, p := range opts.propagation {
		if err := unix.Mount("", dest, "", p, ""); err != nil {
			return fmt.Errorf("set propagation: %w", err)
		}
	}
	if opts.recursiveRO {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(mounted, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("make read-only recursively: %w", err)
		}
	}
	return nil
}

// makeDevices creates the device nodes and the usual /dev links.
func makeDevices(rootfd int, linux *specs.Linux, bind bool, sources map[string]string) error {
	if linux != nil {
		for _, d := range linux.Devices {
			if bind {
				source := d.Path
				if s, ok := sources[d.Path]; ok {
					source = s
				}
				dir, name, err := inroot.Parent(rootfd, d.Path)
				if err != nil {
					return fmt.Errorf("device %s: %w", d.Path, err)
				}
				err = bindDevice(dir, name, source)
				unix.Close(dir)
				if err != nil {
					return fmt.Errorf("device %s: %w", d.Path, err)
				}
				continue
			}
			if err := makeDevice(rootfd, d); err != nil {
				return fmt.Errorf("device %s: %w", d.Path, err)
			}
		}
	}
	dev, err := inroot.MkdirAll(rootfd, "/dev", 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore",
	} {
		if err := unix.Symlinkat(target, dev, name); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("link /dev/%s: %w", name, err)
		}
	}
	return nil
}

func makeDevice(rootfd int, d specs.LinuxDevice) error {
	dir, name, err := inroot.Parent(rootfd, d.Path)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	mode := uint32(0o666)
	if d.FileMode != nil {
		mode = uint32(d.FileMode.Perm())
	}
	switch d.Type {
	case "c", "u":
		mode |= unix.S_IFCHR
	case "b":
		mode |= unix.S_IFBLK
	case "p":
		mode |= unix.S_IFIFO
	default:
		return fmt.Errorf("unknown device type %q", d.Type)
	}
	_ = unix.Unlinkat(dir, name, 0)
	if err := unix.Mknodat(dir, name, mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
		return err
	}
	if err := unix.Fchmodat(dir, name, mode&0o7777, 0); err != nil {
		return err
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	return unix.Fchownat(dir, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

// pivot makes rootfs the root and detaches the old one.
func pivot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("enter rootfs: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// setOOMScore sets the OOM score adjustment, never below the one this process has:
// lowering it needs CAP_SYS_RESOURCE, which the runtime may lack (containerd's
// restrict_oom_score_adj).
func setOOMScore(want *int) error {
	if want == nil {
		return nil
	}
	cur, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return fmt.Errorf("read oom_score_adj: %w", err)
	}
	current, err := strconv.Atoi(strings.TrimSpace(string(cur)))
	if err != nil {
		return fmt.Errorf("parse oom_score_adj: %w", err)
	}
	value := max(*want, current)
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(value)), 0o644); err != nil {
		return fmt.Errorf("set oom_score_adj %d: %w", value, err)
	}
	return nil
}

func setUser(u specs.User) error {
	// Already so (a remapped root, cloned as root with no groups): changing nothing
	// keeps clear of a seccomp filter that turns these calls into no-ops.
	if cur, err := syscall.Getgroups(); err == nil && len(cur) == 0 && len(u.AdditionalGids) == 0 &&
		syscall.Getuid() == int(u.UID) && syscall.Getgid() == int(u.GID) {
		return nil
	}
	groups := make([]int, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("set supplementary groups %v: %w", groups, err)
	}
	if err := syscall.Setgid(int(u.GID)); err != nil {
		return fmt.Errorf("set gid %d: %w", u.GID, err)
	}
	if err := syscall.Setuid(int(u.UID)); err != nil {
		return fmt.Errorf("set uid %d: %w", u.UID, err)
	}
	return nil
}

// lookPath finds the command in the container's PATH, as execvp would.
func lookPath(args, env []string) (string, error) {
	if len(args) == 0 || args[0] == "" {
		return "", errors.New("no command to run: the container and its image give none")
	}
	if strings.Contains(args[0], "/") {
		return args[0], executable(args[0])
	}
	search := defaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			search = v
		}
	}
	for _, dir := range filepath.SplitList(search) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, args[0])
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable file %q not found in $PATH (%s)", args[0], search)
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("command %s: %w", p, err)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("command %s is not an executable file", p)
	}
	return nil
}

// readLine reads one line from r without buffering beyond it.
func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	one := make([]byte, 1)
	for {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return b.String(), nil
			}
			b.WriteByte(one[0])
		}
		if err != nil {
			if b.Len() > 0 && errors.Is(err, io.EOF) {
				return b.String(), nil
			}
			return b.String(), err
		}
	}
}

// securityOf is what a spec asks of the process's privileges.
func securityOf(spec *specs.Spec) processSecurity {
	sec := processSecurity{Caps: spec.Process.Capabilities, NoNewPrivs: spec.Process.NoNewPrivileges}
	if spec.Linux != nil {
		sec.Seccomp = spec.Linux.Seccomp
	}
	return sec
}
