package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/inroot"
)

// tree is an image root directory that entries are written into. Every path is
// resolved inside the tree (openat2 RESOLVE_IN_ROOT): a symlink to "/etc" or a ".."
// inside the image resolves to the tree's own etc, never to the host's.
type tree struct {
	fd     int
	path   string
	root   bool    // running as root: ownership is applied, not only attempted
	budget *budget // what the pull may still write; nil: no bound
}

func openTree(dir string) (*tree, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open image tree %s: %w", dir, err)
	}
	return &tree{fd: fd, path: dir, root: os.Geteuid() == 0}, nil
}

// Close releases the tree's descriptor.
func (t *tree) Close() { _ = unix.Close(t.fd) }

// cleanName turns a tar entry name into a path relative to the tree. A leading "/" is
// dropped (as GNU tar does); a name that climbs out of the tree with ".." is refused.
func cleanName(name string) (string, error) {
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("path %q climbs out of the image with \"..\"", name)
	}
	if rel == "." {
		return "", nil
	}
	return rel, nil
}

// openDir opens a directory of the tree, resolving symlinks inside it.
func (t *tree) openDir(rel string) (int, error) { return inroot.OpenDir(t.fd, rel) }

// mkdirAll creates rel and its missing parents (mode 0755, as tar does for implied
// directories) and returns an O_PATH descriptor for it.
func (t *tree) mkdirAll(rel string) (int, error) { return inroot.MkdirAll(t.fd, rel, 0o755) }

// parent opens the directory holding rel (creating it if needed) and returns it with
// rel's last component.
func (t *tree) parent(rel string) (int, string, error) { return inroot.Parent(t.fd, rel) }

// removeAllAt removes name in dirfd, recursively for a directory. Absence is fine.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	if err := emptyDirAt(dirfd, name, nil); err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove directory %s: %w", name, err)
	}
	return nil
}

// emptyDirAt removes the entries of directory name in dirfd for which keep returns
// false (keep may be nil: remove all). keep receives the entry name and the
// descriptor of the directory being emptied, for recursion.
func emptyDirAt(dirfd int, name string, keep func(child string, childDir int) (bool, error)) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", name, err)
	}
	dir := os.NewFile(uintptr(fd), name)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read directory %s: %w", name, err)
	}
	for _, child := range names {
		if keep != nil {
			kept, err := keep(child, fd)
			if err != nil {
				return err
			}
			if kept {
				continue
			}
		}
		if err := removeAllAt(fd, child); err != nil {
			return err
		}
	}
	return nil
}
