package container

import (
	"fmt"
	"path"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/inroot"
)

// cgroupRoot is where a container sees its own cgroup.
const cgroupRoot = "/sys/fs/cgroup"

// roFlags are the flags of a read-only view.
const roFlags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// mountCgroupView shows the container its own cgroup at /sys/fs/cgroup, read-only, as
// runc does: on cgroup v1 a tmpfs with one directory per hierarchy, each the
// container's cgroup there (and the hierarchies' symlinks); on v2 the container's
// cgroup directory itself. Nothing of the host's other cgroups is visible.
func mountCgroupView(rootfd int, cfg *Config) error {
	view := cfg.CgroupView
	if len(view) == 0 {
		return nil
	}
	if len(view) == 1 && view[0].Name == "" { // cgroup v2
		return bindView(rootfd, cgroupRoot, view[0].Source, fdOf(cfg.ViewFds, 0))
	}
	top, err := inroot.MkdirAll(rootfd, cgroupRoot, 0o755)
	if err != nil {
		return fmt.Errorf("cgroup view: %w", err)
	}
	err = unix.Mount("tmpfs", inroot.ProcPath(top), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755")
	unix.Close(top)
	if err != nil {
		return fmt.Errorf("cgroup view: mount tmpfs: %w", err)
	}
	if top, err = inroot.OpenDir(rootfd, cgroupRoot); err != nil {
		return fmt.Errorf("cgroup view: %w", err)
	}
	defer unix.Close(top)
	for i, d := range view {
		switch {
		case d.Link != "":
			err = unix.Symlinkat(d.Link, top, d.Name)
		case d.Source == "":
			err = unix.Mkdirat(top, d.Name, 0o755)
		default:
			err = bindView(rootfd, path.Join(cgroupRoot, d.Name), d.Source, fdOf(cfg.ViewFds, i))
		}
		if err != nil {
			return fmt.Errorf("cgroup view %s: %w", d.Name, err)
		}
	}
	if err := unix.Mount("", inroot.ProcPath(top), "", unix.MS_REMOUNT|roFlags, "mode=755"); err != nil {
		return fmt.Errorf("cgroup view: make read-only: %w", err)
	}
	return nil
}

func fdOf(fds map[int]int, i int) int {
	if fd, ok := fds[i]; ok {
		return fd
	}
	return -1
}

// bindView binds the host directory source (or the detached tree srcFd) at dest in
// the root, read-only.
func bindView(rootfd int, dest, source string, srcFd int) error {
	target, err := inroot.MkdirAll(rootfd, dest, 0o755)
	if err != nil {
		return err
	}
	if srcFd >= 0 {
		err = unix.MoveMount(srcFd, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
		unix.Close(srcFd)
	} else {
		err = unix.Mount(source, inroot.ProcPath(target), "", unix.MS_BIND, "")
	}
	unix.Close(target)
	if err != nil {
		return fmt.Errorf("bind %s: %w", source, err)
	}
	mounted, err := inroot.OpenPath(rootfd, dest)
	if err != nil {
		return err
	}
	defer unix.Close(mounted)
	return unix.Mount("", inroot.ProcPath(mounted), "", unix.MS_REMOUNT|unix.MS_BIND|roFlags, "")
}
