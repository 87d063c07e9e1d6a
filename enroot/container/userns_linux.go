package container

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/nsenter"
)

// A container in its own user namespace is started in it (the init's clone makes the
// user namespace, and the shim, root on the host, writes its ID maps). Inside it the
// init cannot mount the overlay over the host-owned image, so the shim mounts it and
// hands the init a detached, ID-mapped copy: files owned by host root show as the
// container's root, and what the container's root writes is stored as host root, as
// for any other container. The bundle stays root's and out of the container's reach:
// the init gets its configuration, root and mount sources as descriptors.

// usernsOf reports whether the spec asks for a new user namespace.
func usernsOf(spec *specs.Spec) bool {
	p, listed := namespacePath(spec, specs.UserNamespace)
	return listed && p == "" && spec.Linux != nil && len(spec.Linux.UIDMappings) > 0
}

func idMaps(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(m))
	for i, e := range m {
		out[i] = syscall.SysProcIDMap{ContainerID: int(e.ContainerID), HostID: int(e.HostID), Size: int(e.Size)}
	}
	return out
}

// userns prepares a container's start in a user namespace: the init's clone, ID maps
// and credentials, the ID-mapped root, and the bind and cgroup view sources, opened
// here and numbered for the init (recorded in cfg, the init's copy). It returns the
// files to pass after the configuration.
func (s *shim) userns(exe string, cfg *Config) ([]*os.File, error) {
	l := cfg.Spec.Linux
	tree, err := idmappedRoot(exe, s.bundle, cfg)
	if err != nil {
		return nil, err
	}
	sources, fds, err := mountSources(cfg.Spec.Mounts, initRootFd+1)
	if err != nil {
		tree.Close()
		return nil, err
	}
	if sources, err = s.sysfsSource(cfg, sources, fds, initRootFd+1); err != nil {
		tree.Close()
		return nil, err
	}
	views, viewFds, err := viewSources(cfg.CgroupView, initRootFd+1+len(sources))
	if err != nil {
		tree.Close()
		closeAll(sources)
		return nil, err
	}
	cfg.MountFds, cfg.ViewFds = fds, viewFds
	attr := s.cmd.SysProcAttr
	attr.Cloneflags |= unix.CLONE_NEWUSER
	attr.UidMappings, attr.GidMappings = idMaps(l.UIDMappings), idMaps(l.GIDMappings)
	attr.GidMappingsEnableSetgroups = !cfg.PresetGroups
	attr.Credential = initCredential(cfg)
	if u := cfg.Spec.Process.User; cfg.PresetGroups && u.UID != 0 {
		// Enroot raises every capability of the namespace as ambient ones, so that the
		// init and its hooks keep them as the (non-root) user.
		attr.AmbientCaps = namespaceCaps()
	}
	return append(append([]*os.File{tree}, sources...), views...), nil
}

// initCredential is who the init is inside its user namespace: root (it drops to the
// container's user itself), or with PresetGroups the container's user already, its
// groups kept from the shim, as a Slurm task enters Enroot's namespace.
func initCredential(cfg *Config) *syscall.Credential {
	if !cfg.PresetGroups {
		// Without it the init would keep host root's IDs, which the namespace does not
		// map, and have no capabilities in it.
		return &syscall.Credential{Uid: 0, Gid: 0}
	}
	u := cfg.Spec.Process.User
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, NoSetGroups: true}
}

// namespaceCaps lists every capability this process may hand out, by number.
func namespaceCaps() []uintptr {
	var out []uintptr
	for _, name := range CapabilityNames() {
		out = append(out, capNames[name])
	}
	return out
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// chownTree gives dir and everything in it to uid:gid, never following a link.
func chownTree(dir string, uid, gid int) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { _ = root.Close() }()
	return fs.WalkDir(root.FS(), ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return root.Lchown(p, uid, gid)
	})
}

// rootOwner maps the image's root, on the host: the container's root where the
// container's namespace maps one, else (an Enroot user's single ID) that user, whom
// Enroot's squashfuse makes the owner of every file of the image.
func rootOwner(l *specs.Linux) (uids, gids []specs.LinuxIDMapping) {
	uids, gids = l.UIDMappings, l.GIDMappings
	if uids[0].ContainerID != 0 {
		uids = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uids[0].HostID, Size: 1}}
	}
	if gids[0].ContainerID != 0 {
		gids = []specs.LinuxIDMapping{{ContainerID: 0, HostID: gids[0].HostID, Size: 1}}
	}
	return uids, gids
}

// idmappedRoot mounts the container's overlay over an ID-mapped copy of the image's
// squashfs (the image's root files become rootOwner's) and returns a detached copy of
// it. Overlayfs cannot
// be ID-mapped itself, and an ID-mapped upper layer would refuse the overlay's own
// work as host root; the writable layer instead belongs to the container's root on
// the host. The staging mounts in the bundle are gone when it returns: the overlay
// holds its lower layer, the descriptor the overlay.
func idmappedRoot(exe, bundle string, cfg *Config) (*os.File, error) {
	uids, gids := rootOwner(cfg.Spec.Linux)
	userns, stop, err := usernsAnchor(exe, uids, gids)
	if err != nil {
		return nil, err
	}
	defer stop()
	staging := filepath.Join(bundle, "root-staging")
	lower, merged := filepath.Join(staging, "lower"), filepath.Join(staging, "merged")
	for _, d := range []string{lower, merged} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create staging root: %w", err)
		}
	}
	defer func() {
		for _, d := range []string{merged, lower} {
			_ = unix.Unmount(d, unix.MNT_DETACH)
		}
		_ = os.RemoveAll(staging)
	}()
	if err := attachIDMapped(cfg.Spec.Root.Path, lower, userns); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.UpperDir, cfg.WorkDir} {
		if err := chownTree(d, int(uids[0].HostID), int(gids[0].HostID)); err != nil {
			return nil, fmt.Errorf("give the writable layer to the container's root: %w", err)
		}
	}
	overlay := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, cfg.UpperDir, cfg.WorkDir)
	if err := unix.Mount("overlay", merged, "overlay", 0, overlay); err != nil {
		return nil, fmt.Errorf("mount overlay root over ID-mapped layers: %w", err)
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, merged, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("clone the root mount: %w", err)
	}
	return os.NewFile(uintptr(fd), "root"), nil
}

// attachIDMapped mounts an ID-mapped copy of the directory src at dst.
func attachIDMapped(src, dst string, userns *os.File) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("clone %s: %w", src, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("map the IDs of %s (its filesystem must support ID-mapped mounts): %w", src, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the ID-mapped %s: %w", src, err)
	}
	return nil
}

// usernsAnchor starts a process in a new user namespace with the mappings and opens
// its namespace: ID-mapped mounts take their mapping from a user namespace.
func usernsAnchor(exe string, uids, gids []specs.LinuxIDMapping) (*os.File, func(), error) {
	cmd := exec.Command(exe, "userns-anchor")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER,
		UidMappings: idMaps(uids), GidMappings: idMaps(gids)}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start a user namespace: %w", err)
	}
	stop := func() {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("open user namespace: %w", err)
	}
	return ns, func() { ns.Close(); stop() }, nil
}

// RunUsernsAnchor is `enroot-cri userns-anchor`: it holds a user namespace open until
// its standard input closes.
func RunUsernsAnchor() error {
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// usernsStage is where, in a container's own mount namespace, the ID-mapped root is
// attached before the pivot: a tmpfs, private to that namespace, over the first empty
// one of a few host directories (hooks and mounts.d still need the host's others until
// the pivot), else over /tmp.
func usernsStage() string {
	for _, d := range []string{"/mnt", "/media", "/srv"} {
		if entries, err := os.ReadDir(d); err == nil && len(entries) == 0 {
			return d
		}
	}
	return "/tmp"
}

// attachIDMappedRoot attaches the ID-mapped root the shim handed over and returns
// where, and a private directory beside it for Enroot's hook files.
func attachIDMappedRoot() (rootfs, stage string, err error) {
	dir := usernsStage()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return "", "", fmt.Errorf("mount the staging tmpfs: %w", err)
	}
	rootfs, stage = filepath.Join(dir, "rootfs"), filepath.Join(dir, "enroot")
	for _, d := range []string{rootfs, stage} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", "", err
		}
	}
	if err := unix.MoveMount(initRootFd, "", unix.AT_FDCWD, rootfs, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", "", fmt.Errorf("attach the ID-mapped root: %w", err)
	}
	if err := unix.Mount("", rootfs, "", unix.MS_PRIVATE, ""); err != nil {
		return "", "", fmt.Errorf("make rootfs private: %w", err)
	}
	return rootfs, stage, unix.Close(initRootFd)
}

// mountSources opens the source of every bind mount as a detached copy, numbered from
// first in the init: a user namespace may not reach host paths such as the pod's
// files or the kubelet's volumes.
func mountSources(mounts []specs.Mount, first int) ([]*os.File, map[int]int, error) {
	var files []*os.File
	fds := map[int]int{}
	for i, m := range mounts {
		opts := parseMountOptions(m.Type, m.Options)
		// /sys and /dev are open to anyone: the init binds them itself.
		if !opts.bind || m.Source == "/sys" || strings.HasPrefix(m.Source, "/dev/") {
			continue
		}
		f, err := openTree(m.Source, opts.flags&unix.MS_REC != 0)
		if err != nil {
			closeAll(files)
			return nil, nil, err
		}
		fds[i] = first + len(files)
		files = append(files, f)
	}
	return files, fds, nil
}

// sysfsSource gives the /sys bind of a user namespace a sysfs of the container's
// network namespace (the namespace may not mount one itself: the host's user namespace
// owns the network namespace), made by the shim in that network namespace; a bind of
// the host's /sys would show the host's network devices.
func (s *shim) sysfsSource(cfg *Config, sources []*os.File, fds map[int]int, first int) ([]*os.File, error) {
	for i, m := range cfg.Spec.Mounts {
		if m.Source != "/sys" || m.Destination != "/sys" {
			continue
		}
		netns, _ := namespacePath(&cfg.Spec, specs.NetworkNamespace)
		var fd int
		err := nsenter.Run(netns, func() error {
			var err error
			fd, err = sysfsMount()
			return err
		})
		if err != nil {
			closeAll(sources)
			return nil, err
		}
		fds[i] = first + len(sources)
		return append(sources, os.NewFile(uintptr(fd), "sysfs")), nil
	}
	return sources, nil
}

// sysfsMount makes a detached, read-only sysfs of the calling thread's network
// namespace.
func sysfsMount() (int, error) {
	fs, err := unix.Fsopen("sysfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open sysfs: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("create sysfs: %w", err)
	}
	fd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return -1, fmt.Errorf("mount sysfs: %w", err)
	}
	return fd, nil
}

// viewSources opens the host directories of a cgroup view, numbered from first.
func viewSources(view []CgroupDir, first int) ([]*os.File, map[int]int, error) {
	var files []*os.File
	fds := map[int]int{}
	for i, d := range view {
		if d.Source == "" {
			continue
		}
		f, err := openTree(d.Source, false)
		if err != nil {
			closeAll(files)
			return nil, nil, err
		}
		fds[i] = first + len(files)
		files = append(files, f)
	}
	return files, fds, nil
}

// openTree opens a detached copy of the mount tree at path.
func openTree(path string, recursive bool) (*os.File, error) {
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, uint(flags))
	if err != nil {
		return nil, fmt.Errorf("open mount source %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// bindDevice makes the device node at name in dir a bind mount of the host's node:
// a user namespace may not create device nodes.
func bindDevice(dir int, name, source string) error {
	fd, err := unix.Openat(dir, name, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Mount(source, fmt.Sprintf("/proc/self/fd/%d", fd), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", source, err)
	}
	return nil
}
