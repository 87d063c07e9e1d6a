package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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

// defaultPath is the PATH used to find the command when the container sets none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// RunInit is `enroot-cri init`: the container's first process, run from a sealed copy
// of the binary. The shim starts it in a new mount namespace (and PID namespace, or the
// pod's, and a user namespace where asked), already inside the pod's network, IPC and
// UTS namespaces. It builds the root filesystem, reports ready, waits for the start
// signal and executes the command. It returns only on failure.
func RunInit() error {
	// Capabilities, the bounding set, no_new_privs, seccomp, namespaces made with
	// unshare and the session keyring are per thread: all of them are set on this
	// thread, which then executes the command.
	runtime.LockOSThread()
	sync := os.NewFile(initSyncFd, "sync")
	err := prepareAndWait(sync)
	// Only reached on failure: tell the shim why.
	fmt.Fprintf(sync, "%s%v\n", errorPrefix, err)
	return err
}

func prepareAndWait(sync *os.File) error {
	// The sync pipe closes when exec succeeds: that is how the shim learns it did.
	unix.CloseOnExec(initSyncFd)
	cfg, err := readInitConfig()
	if err != nil {
		return err
	}
	start := os.NewFile(initStartFd, "start")
	if _, err := io.ReadFull(start, make([]byte, 1)); err != nil {
		return fmt.Errorf("wait for the container's cgroup: %w", err)
	}
	if err := joinNewSessionKeyring(); err != nil {
		return err
	}
	if cfg.EnrootFilter {
		if err := loadEnrootFilter(); err != nil {
			return err
		}
	}
	spec := &cfg.Spec
	if err := setupRootfs(cfg); err != nil {
		return err
	}
	if err := unshareCgroup(spec); err != nil {
		return err
	}
	if spec.Process.Terminal {
		if err := takeTerminal(initConsoleFd); err != nil {
			return err
		}
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
	if err := becomeUser(sec, spec.Process.User, cfg.PresetGroups); err != nil {
		return err
	}
	if err := enterWorkingDir(spec.Process.Cwd); err != nil {
		return err
	}
	env, err := json.Marshal(spec.Process.Env)
	if err != nil {
		return fmt.Errorf("encode environment: %w", err)
	}
	if _, err := sync.WriteString(readyPrefix + string(env) + "\n"); err != nil {
		return fmt.Errorf("report ready: %w", err)
	}
	if _, err := io.ReadFull(start, make([]byte, 1)); err != nil {
		return fmt.Errorf("wait for start: %w", err)
	}
	start.Close()
	return execute(sec, path, spec.Process.Args, spec.Process.Env)
}

// readInitConfig reads the configuration the shim handed over and closes it.
func readInitConfig() (*Config, error) {
	f := os.NewFile(initConfigFd, "config")
	defer f.Close()
	var cfg Config
	if err := json.NewDecoder(f).Decode(&cfg); err != nil {
		return nil, fmt.Errorf("read container configuration: %w", err)
	}
	if cfg.Version != configVersion {
		return nil, fmt.Errorf("container configuration version %d; this binary reads %d", cfg.Version, configVersion)
	}
	return &cfg, nil
}

// becomeUser drops to the process's user with the capabilities the spec gives it.
func becomeUser(sec processSecurity, u specs.User, presetGroups bool) error {
	if err := sec.applyBeforeUser(); err != nil {
		return err
	}
	if err := setUser(u, presetGroups); err != nil {
		return err
	}
	return sec.applyAfterUser()
}

// enterWorkingDir changes to dir and checks that it is inside the container's root:
// a path through a descriptor (/proc/self/fd/N) must not lead out of it, as runc checks
// since CVE-2024-21626.
func enterWorkingDir(dir string) error {
	if err := os.Chdir(dir); err != nil {
		return fmt.Errorf("enter working directory %s: %w", dir, err)
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Getcwd(buf)
	if err != nil || n == 0 || buf[0] != '/' {
		return fmt.Errorf("working directory %s is outside the container's root", dir)
	}
	return nil
}

// execute applies the last privileges, closes every descriptor above stderr on exec
// and executes the command.
func execute(sec processSecurity, path string, args, env []string) error {
	if err := sec.applyLast(); err != nil {
		return err
	}
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close descriptors: %w", err)
	}
	if err := unix.Exec(path, args, env); err != nil {
		return fmt.Errorf("exec %s: %w", args[0], err)
	}
	return nil
}

// joinNewSessionKeyring gives the process an anonymous session keyring of its own, so
// that keys one container adds to its session keyring are not another's.
func joinNewSessionKeyring() error {
	_, _, errno := unix.RawSyscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
	if errno != 0 && errno != unix.ENOSYS {
		return fmt.Errorf("join a new session keyring: %w", errno)
	}
	return nil
}

// unshareCgroup makes the container's cgroup namespace, rooted at the cgroup the init
// is in, when the spec asks for a new one; Enroot's hooks, which read the host's cgroup
// paths, have run by then.
func unshareCgroup(spec *specs.Spec) error {
	if p, listed := namespacePath(spec, specs.CgroupNamespace); listed && p == "" {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("create cgroup namespace: %w", err)
		}
	}
	return nil
}

// setupRootfs mounts the overlay root, the configured mounts and devices, applies the
// Enroot configuration, and pivots into the root.
func setupRootfs(cfg *Config) error {
	// Host mounts reach the container; the container's reach the host only through a
	// bidirectional mount, and then only inside it.
	propagation := uintptr(unix.MS_REC | unix.MS_SLAVE)
	if cfg.SharedRoot {
		propagation = unix.MS_REC | unix.MS_SHARED
	}
	if err := unix.Mount("", "/", "", propagation, ""); err != nil {
		return fmt.Errorf("set mount propagation: %w", err)
	}
	if cfg.Enroot != nil {
		// Hooks and mounts.d act on the host's tree before the root switch: in this
		// mount namespace it is read-only, so that nothing they do through an image's
		// symlinks or a pod's variables can write to the host.
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(unix.AT_FDCWD, "/", unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("make the host's mounts read-only for hooks: %w", err)
		}
	}
	rootfs, stage, err := mountRoot(cfg)
	if err != nil {
		return err
	}
	rootfd, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer unix.Close(rootfd)
	if err := mountAll(rootfd, cfg); err != nil {
		return err
	}
	if cfg.Enroot != nil {
		env, err := applyEnroot(rootfd, rootfs, stage, cfg.Enroot, cfg.Spec.Process.Env)
		if err != nil {
			return err
		}
		cfg.Spec.Process.Env = env
	}
	if err := finishRootfs(rootfd, rootfs, cfg); err != nil {
		return err
	}
	return pivot(rootfs)
}

// mountRoot mounts the container's root and returns it and a private directory of
// this mount namespace for Enroot's hook files.
func mountRoot(cfg *Config) (rootfs, stage string, err error) {
	if usernsOf(&cfg.Spec) {
		// The host's directories are out of reach for this namespace's root: the
		// ID-mapped root goes on a private tmpfs of this namespace instead.
		return attachIDMappedRoot()
	}
	rootfs = cfg.Rootfs
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return "", "", fmt.Errorf("create rootfs: %w", err)
	}
	// A private mount under the root keeps everything mounted into it (overlay,
	// /proc, binds) from propagating anywhere, and lets pivot_root work.
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND, ""); err != nil {
		return "", "", fmt.Errorf("bind rootfs: %w", err)
	}
	if err := unix.Mount("", rootfs, "", unix.MS_PRIVATE, ""); err != nil {
		return "", "", fmt.Errorf("make rootfs private: %w", err)
	}
	overlay := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", cfg.Spec.Root.Path, cfg.UpperDir, cfg.WorkDir)
	if err := unix.Mount("overlay", rootfs, "overlay", 0, overlay); err != nil {
		return "", "", fmt.Errorf("mount overlay root (%s): %w", overlay, err)
	}
	stage = filepath.Join(filepath.Dir(rootfs), "stage")
	if err := privateTmpfs(stage); err != nil {
		return "", "", err
	}
	return rootfs, stage, nil
}

// privateTmpfs mounts a tmpfs, seen by this mount namespace only, at dir.
func privateTmpfs(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("mount a private tmpfs on %s: %w", dir, err)
	}
	return nil
}

// mountAll creates the image's volumes, mounts the spec's mounts, in order, and the
// container's view of its cgroup.
func mountAll(rootfd int, cfg *Config) error {
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
		err := mountInto(rootfd, m, srcFd)
		if srcFd >= 0 {
			unix.Close(srcFd)
		}
		if err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Source, m.Destination, err)
		}
	}
	// Before the hooks: Enroot's 10-cgroups.sh binds the container's cgroup onto the
	// directories it expects at /sys/fs/cgroup.
	return mountCgroupView(rootfd, cfg)
}

// finishRootfs adds what comes after the mounts: device nodes, masked and read-only
// paths, and a read-only root where asked.
func finishRootfs(rootfd int, rootfs string, cfg *Config) error {
	if err := makeDevices(rootfd, cfg.Spec.Linux, usernsOf(&cfg.Spec), cfg.DeviceSources); err != nil {
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
	return nil
}

// mountInto mounts m at its destination inside the root, resolving the destination
// inside the root so that an image's symlinks cannot redirect it.
func mountInto(rootfd int, m specs.Mount, srcFd int) error {
	opts := parseMountOptions(m.Type, m.Options)
	target, err := mountTarget(rootfd, m, opts, srcFd)
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
	return adjustMount(mounted, opts)
}

// mountTarget creates the destination of m in the root (a directory, or a file for
// a bind of a file) and opens it.
func mountTarget(rootfd int, m specs.Mount, opts mountOptions, srcFd int) (int, error) {
	if !opts.bind {
		return inroot.MkdirAll(rootfd, m.Destination, 0o755)
	}
	var st unix.Stat_t
	var err error
	if srcFd >= 0 {
		err = unix.Fstat(srcFd, &st)
	} else {
		err = unix.Stat(m.Source, &st)
	}
	if err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return inroot.MkdirAll(rootfd, m.Destination, 0o755)
	}
	return inroot.CreateFile(rootfd, m.Destination)
}

// adjustMount applies what a mount takes after it exists: bind flags, writability
// (a bind from a tree this namespace made read-only is made writable again unless
// it was read-only on the host), propagation and recursive read-only.
func adjustMount(mounted int, opts mountOptions) error {
	dest := inroot.ProcPath(mounted)
	if opts.bind && opts.flags&^(unix.MS_BIND|unix.MS_REC) != 0 {
		// Bind mounts take ro, nosuid and friends only on a remount.
		// EPERM for a writable bind: its source is read-only on the host (locked).
		err := unix.Mount("", dest, "", opts.flags&^unix.MS_REC|unix.MS_REMOUNT|unix.MS_BIND, "")
		if err != nil && (!errors.Is(err, unix.EPERM) || opts.flags&unix.MS_RDONLY != 0) {
			return fmt.Errorf("remount: %w", err)
		}
	}
	if opts.bind && opts.flags&unix.MS_RDONLY == 0 {
		clearReadonly(mounted, opts.flags&unix.MS_REC != 0)
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

// clearReadonly makes a bind writable where this namespace, not the host, made its
// source read-only; a mount the host has read-only stays so (the kernel refuses).
func clearReadonly(mounted int, recursive bool) {
	attr := unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY}
	if recursive && unix.MountSetattr(mounted, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr) == nil {
		return
	}
	_ = unix.MountSetattr(mounted, "", unix.AT_EMPTY_PATH, &attr)
}

// makeDevices creates the device nodes and the usual /dev links.
func makeDevices(rootfd int, linux *specs.Linux, bind bool, sources map[string]string) error {
	if linux != nil {
		for _, d := range linux.Devices {
			if err := makeOrBindDevice(rootfd, d, bind, sources); err != nil {
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

func makeOrBindDevice(rootfd int, d specs.LinuxDevice, bind bool, sources map[string]string) error {
	if !bind {
		return makeDevice(rootfd, d)
	}
	source := d.Path
	if s, ok := sources[d.Path]; ok {
		source = s
	}
	dir, name, err := inroot.Parent(rootfd, d.Path)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	return bindDevice(dir, name, source)
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
	oldRoot, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the old root: %w", err)
	}
	defer unix.Close(oldRoot)
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("enter rootfs: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	// The old root is stacked on the new one now; from inside it, "." is its root.
	// With a bidirectional mount the tree is shared, and detaching the old root as it
	// is would unmount its mounts' peers: the host's mounts under a shared mount, and
	// those the container's own bidirectional mounts hold. As a slave it takes them
	// along alone (runc does the same).
	if err := unix.Fchdir(oldRoot); err != nil {
		return fmt.Errorf("enter the old root: %w", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make the old root a slave: %w", err)
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

// setUser takes the user's IDs and groups. presetGroups: the groups were given before
// a user namespace that denies setgroups, and the IDs at its creation.
func setUser(u specs.User, presetGroups bool) error {
	// Already so (a remapped root, cloned as root with no groups; an Enroot user):
	// changing nothing keeps clear of a seccomp filter that turns these calls into
	// no-ops.
	if syscall.Getuid() == int(u.UID) && syscall.Getgid() == int(u.GID) {
		if presetGroups {
			return nil
		}
		if cur, err := syscall.Getgroups(); err == nil && len(cur) == 0 && len(u.AdditionalGids) == 0 {
			return nil
		}
	}
	if presetGroups {
		return fmt.Errorf("the init runs as %d:%d, not %d:%d", syscall.Getuid(), syscall.Getgid(), u.UID, u.GID)
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
