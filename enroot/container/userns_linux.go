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
)

// A container in its own user namespace is started in it (the init's clone makes the
// user namespace, and the shim, root on the host, writes its ID maps). Inside it the
// init cannot mount the overlay over the host-owned image, so the shim mounts it and
// hands the init a detached, ID-mapped copy: files owned by host root show as the
// container's root, and what the container's root writes is stored as host root, as
// for any other container. The bundle is handed over as a file descriptor and owned
// by the container's root, whose host ID may not enter the daemon's directories.

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

// userns prepares a container's start in a user namespace: the init's clone and ID
// maps, the bundle handed over as a descriptor (the init's bundle argument becomes
// /proc/self/fd/N) and the ID-mapped root. It returns the files to pass.
func (s *shim) userns(exe string) ([]*os.File, string, error) {
	l := s.cfg.Spec.Linux
	root := int(l.UIDMappings[0].HostID)
	group := int(l.GIDMappings[0].HostID)
	if err := chownTree(s.bundle, root, group); err != nil {
		return nil, "", err
	}
	bundleDir, err := os.Open(s.bundle)
	if err != nil {
		return nil, "", fmt.Errorf("open bundle: %w", err)
	}
	tree, err := idmappedRoot(exe, s.bundle, s.cfg)
	if err != nil {
		bundleDir.Close()
		return nil, "", err
	}
	sources, fds, err := mountSources(s.cfg.Spec.Mounts, initRootFd+1)
	if err != nil {
		bundleDir.Close()
		tree.Close()
		return nil, "", err
	}
	s.cfg.MountFds = fds
	err = writeConfig(s.bundle, s.cfg)
	if err == nil {
		err = os.Lchown(filepath.Join(s.bundle, "config.json"), root, group)
	}
	if err != nil {
		bundleDir.Close()
		tree.Close()
		return nil, "", err
	}
	attr := s.cmd.SysProcAttr
	attr.Cloneflags |= unix.CLONE_NEWUSER
	attr.UidMappings, attr.GidMappings = idMaps(l.UIDMappings), idMaps(l.GIDMappings)
	attr.GidMappingsEnableSetgroups = true
	// Root inside: without it the init would keep host root's IDs, which the
	// namespace does not map, and have no capabilities in it.
	attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	return append([]*os.File{bundleDir, tree}, sources...), fmt.Sprintf("/proc/self/fd/%d", initBundleFd), nil
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

// idmappedRoot mounts the container's overlay over an ID-mapped copy of the image's
// squashfs (mapped with the container's user namespace mappings, so the image's root
// files are the container root's) and returns a detached copy of it. Overlayfs cannot
// be ID-mapped itself, and an ID-mapped upper layer would refuse the overlay's own
// work as host root; the writable layer instead belongs to the container's root on
// the host. The staging mounts in the bundle are gone when it returns: the overlay
// holds its lower layer, the descriptor the overlay.
func idmappedRoot(exe, bundle string, cfg *Config) (*os.File, error) {
	userns, stop, err := usernsAnchor(exe, cfg.Spec.Linux)
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
	l := cfg.Spec.Linux
	for _, d := range []string{cfg.UpperDir, cfg.WorkDir} {
		if err := chownTree(d, int(l.UIDMappings[0].HostID), int(l.GIDMappings[0].HostID)); err != nil {
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
func usernsAnchor(exe string, l *specs.Linux) (*os.File, func(), error) {
	cmd := exec.Command(exe, "userns-anchor")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWUSER,
		UidMappings: idMaps(l.UIDMappings), GidMappings: idMaps(l.GIDMappings)}
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
// where.
func attachIDMappedRoot() (string, error) {
	stage := usernsStage()
	if err := unix.Mount("tmpfs", stage, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return "", fmt.Errorf("mount the staging tmpfs: %w", err)
	}
	rootfs := filepath.Join(stage, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return "", err
	}
	if err := unix.MoveMount(initRootFd, "", unix.AT_FDCWD, rootfs, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("attach the ID-mapped root: %w", err)
	}
	if err := unix.Mount("", rootfs, "", unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("make rootfs private: %w", err)
	}
	return rootfs, unix.Close(initRootFd)
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
		flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
		if opts.flags&unix.MS_REC != 0 {
			flags |= unix.AT_RECURSIVE
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, m.Source, uint(flags))
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, nil, fmt.Errorf("open mount source %s: %w", m.Source, err)
		}
		fds[i] = first + len(files)
		files = append(files, os.NewFile(uintptr(fd), m.Source))
	}
	return files, fds, nil
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
