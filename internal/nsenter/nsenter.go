package nsenter

import (
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Start starts cmd after joining each namespace in paths (nsfs files such as
// /proc/PID/ns/net or a bind-mounted pin), in order; empty paths are skipped.
func Start(cmd *exec.Cmd, paths ...string) error {
	return StartWithGroups(cmd, nil, paths...)
}

// StartWithGroups is Start with groups, when not nil, as the child's supplementary
// groups: they are set on the forking thread only, so that a child that enters a user
// namespace denying setgroups keeps them.
func StartWithGroups(cmd *exec.Cmd, groups []uint32, paths ...string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's namespaces are changed
		if groups != nil {
			if err := setThreadGroups(groups); err != nil {
				errc <- err
				return
			}
		}
		for _, p := range paths {
			if p == "" {
				continue
			}
			if err := Join(p); err != nil {
				errc <- err
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// Join moves the calling thread into the namespace at path.
func Join(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, 0); err != nil {
		return fmt.Errorf("join namespace %s: %w", path, err)
	}
	return nil
}

// Run calls fn on an OS thread inside the network namespace at netns (the calling
// thread, unchanged, when netns is empty).
func Run(netns string, fn func() error) error {
	if netns == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's namespace is changed
		if err := Join(netns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Dial connects to addr over TCP from inside the network namespace at netns (the
// host's when netns is empty). The connection works from any thread afterwards.
func Dial(netns, addr string) (net.Conn, error) {
	var conn net.Conn
	err := Run(netns, func() error {
		var err error
		conn, err = net.Dial("tcp", addr)
		return err
	})
	return conn, err
}

// setThreadGroups sets the calling thread's supplementary groups (setgroups(2) itself,
// not the all-threads wrapper).
func setThreadGroups(groups []uint32) error {
	var ptr unsafe.Pointer
	if len(groups) > 0 {
		ptr = unsafe.Pointer(&groups[0]) //nolint:gosec // setgroups(2) takes the array by address
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(ptr), 0); errno != 0 {
		return fmt.Errorf("set supplementary groups %v: %w", groups, errno)
	}
	return nil
}
