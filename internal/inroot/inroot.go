package inroot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// OpenDir opens directory rel of the tree rooted at rootfd as an O_PATH descriptor.
func OpenDir(rootfd int, rel string) (int, error) {
	return open(rootfd, rel, unix.O_PATH|unix.O_DIRECTORY)
}

// OpenPath opens rel (any file type, the last component not followed if a symlink
// is not allowed: symlinks resolve inside the tree) as an O_PATH descriptor.
func OpenPath(rootfd int, rel string) (int, error) {
	return open(rootfd, rel, unix.O_PATH)
}

func open(rootfd int, rel string, flags uint64) (int, error) {
	rel = path.Clean("/" + rel)[1:]
	if rel == "" {
		return unix.Dup(rootfd)
	}
	how := unix.OpenHow{
		Flags:   flags | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(rootfd, rel, &how)
	if err != nil {
		return -1, fmt.Errorf("open %s in root: %w", rel, err)
	}
	return fd, nil
}

// MkdirAll creates directory rel and its missing parents with mode perm and returns an
// O_PATH descriptor for it.
func MkdirAll(rootfd int, rel string, perm uint32) (int, error) {
	rel = path.Clean("/" + rel)[1:]
	fd, err := OpenDir(rootfd, rel)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, err := MkdirAll(rootfd, path.Dir(rel), perm)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	if err := unix.Mkdirat(parent, path.Base(rel), perm); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create directory %s in root: %w", rel, err)
	}
	return OpenDir(rootfd, rel)
}

// Parent opens (creating if needed) the directory holding rel and returns it with
// rel's last component.
func Parent(rootfd int, rel string) (int, string, error) {
	rel = path.Clean("/" + rel)[1:]
	fd, err := MkdirAll(rootfd, path.Dir(rel), 0o755)
	return fd, path.Base(rel), err
}

// CreateFile makes sure a regular file (or any non-directory) exists at rel, creating
// an empty one and its parents if needed, and returns an O_PATH descriptor for it.
func CreateFile(rootfd int, rel string) (int, error) {
	if fd, err := OpenPath(rootfd, rel); err == nil {
		return fd, nil
	}
	dirfd, name, err := Parent(rootfd, rel)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat(dirfd, name, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("create %s in root: %w", rel, err)
	}
	if err == nil {
		unix.Close(fd)
	}
	return OpenPath(rootfd, rel)
}

// ProcPath is the path through which the kernel reaches the file fd refers to; mount
// and other path-taking calls use it so that they act on exactly that file.
func ProcPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// openRoot opens the directory at root as the tree's O_PATH descriptor.
func openRoot(root string) (int, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", root, err)
	}
	return fd, nil
}

// Resolve resolves rel inside the tree at root as a chroot would (symlinks stay inside
// it) and returns the host path of what it names, which must exist.
func Resolve(root, rel string) (string, error) {
	rootfd, err := openRoot(root)
	if err != nil {
		return "", err
	}
	defer unix.Close(rootfd)
	fd, err := OpenPath(rootfd, rel)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return os.Readlink(ProcPath(fd))
}

// ReadFile reads file rel of the tree at root (a directory path), resolving every
// component inside the tree.
func ReadFile(root, rel string) ([]byte, error) {
	rootfd, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	fd, err := open(rootfd, rel, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 16<<20))
}
