package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/inroot"
)

// The reference the stream is checked against: the layers applied to a directory, one
// after the other, as `enroot import` and the store before the stream did, then
// squashed. Merged streaming must give the same image.

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

// writeEntry writes one non-whiteout tar entry at rel.
func (t *tree) writeEntry(rel string, hdr *tar.Header, r io.Reader) error {
	dirfd, name, err := t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if err := replaceable(dirfd, name, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = unix.Mkdirat(dirfd, name, 0o700)
		if errors.Is(err, unix.EEXIST) {
			err = nil // merge with the lower layer's directory
		}
	case tar.TypeReg, tar.TypeGNUSparse:
		err = writeFileAt(dirfd, name, hdr.Size, r)
	case tar.TypeSymlink:
		err = unix.Symlinkat(hdr.Linkname, dirfd, name)
	case tar.TypeLink:
		err = t.hardlink(hdr.Linkname, dirfd, name)
	case tar.TypeFifo:
		err = unix.Mknodat(dirfd, name, unix.S_IFIFO|0o600, 0)
	case tar.TypeChar, tar.TypeBlock:
		return nil // device nodes are never taken from images
	default:
		return nil // PAX/GNU meta entries are consumed by archive/tar
	}
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeLink {
		return nil // a hard link shares its target's inode and attributes
	}
	return t.setAttributes(dirfd, name, hdr)
}

// replaceable clears the way for a new entry: anything but a directory that a
// directory entry merges into is removed.
func replaceable(dirfd int, name string, isDir bool) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if isDir && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil
	}
	return removeAllAt(dirfd, name)
}

// hardlink links name to target, a path inside the tree.
func (t *tree) hardlink(target string, dirfd int, name string) error {
	rel, err := cleanName(target)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if rel == "" {
		return fmt.Errorf("hard link target %q is the image root", target)
	}
	tdir, err := t.openDir(path.Dir(rel))
	if err != nil {
		return fmt.Errorf("hard link to %q (the target must be in the image): %w", target, err)
	}
	defer unix.Close(tdir)
	if err := unix.Linkat(tdir, path.Base(rel), dirfd, name, 0); err != nil {
		return fmt.Errorf("hard link to %q (the target must be in the image): %w", target, err)
	}
	return nil
}

// writeFileAt creates a regular file with size bytes from r. Runs of zeros become
// holes, so a huge sparse (or zero-filled) entry takes no disk space.
func writeFileAt(dirfd int, name string, size int64, r io.Reader) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	buf := make([]byte, 128<<10)
	var off int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if isZero(buf[:n]) {
				_, err = f.Seek(int64(n), io.SeekCurrent)
			} else {
				_, err = f.Write(buf[:n])
			}
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
			off += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read: %w", rerr)
		}
	}
	if off != size {
		return fmt.Errorf("short entry: %d of %d bytes", off, size)
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("set size: %w", err)
	}
	return f.Close()
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// setAttributes applies ownership, mode, extended attributes and modification time.
// Without root, ownership is attempted and an EPERM ignored (as Enroot, which runs
// unprivileged, ends with the caller's ownership).
func (t *tree) setAttributes(dirfd int, name string, hdr *tar.Header) error {
	if err := unix.Fchownat(dirfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil &&
		(t.root || !errors.Is(err, unix.EPERM)) {
		return fmt.Errorf("chown: %w", err)
	}
	for key, value := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(key, "SCHILY.xattr.")
		if !ok {
			continue
		}
		p := fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
		if err := unix.Lsetxattr(p, attr, []byte(value), 0); err != nil &&
			!errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("set xattr %s: %w", attr, err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// After chown, which clears set-id bits.
		if err := unix.Fchmodat(dirfd, name, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// applyLayer applies one layer's tar stream to the tree: regular files, directories,
// symlinks, hard links and FIFOs are written with their ownership, mode, times and
// extended attributes; whiteouts delete what lower layers wrote; device nodes and
// anything under dev/ are skipped as Enroot skips them.
func (t *tree) applyLayer(r io.Reader) error {
	tr := tar.NewReader(r)
	written := map[string]bool{} // paths this layer wrote, which an opaque marker keeps
	var opaque []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w", err)
		}
		rel, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		size := int64(0)
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeGNUSparse {
			size = hdr.Size
		}
		if err := t.budget.entry(size); err != nil {
			return err
		}
		base := path.Base(rel)
		switch {
		case rel == "":
			continue // the root's own attributes are left as they are
		case strings.HasPrefix(rel, "dev/"):
			continue // Enroot takes nothing under /dev from an image
		case base == opaqueMarker:
			opaque = append(opaque, path.Dir(rel))
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			if err := t.whiteout(path.Join(path.Dir(rel), strings.TrimPrefix(base, whiteoutPrefix))); err != nil {
				return err
			}
			continue
		}
		if err := t.writeEntry(rel, hdr, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		written[rel] = true
	}
	for _, dir := range opaque {
		if err := t.makeOpaque(dir, written); err != nil {
			return err
		}
	}
	return nil
}

func (t *tree) whiteout(rel string) error {
	dirfd, name, err := t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	return removeAllAt(dirfd, name)
}

// makeOpaque hides everything under dir that lower layers wrote, keeping what this
// layer wrote (the marker may come before or after those entries in the tar).
func (t *tree) makeOpaque(dir string, written map[string]bool) error {
	var keep func(prefix string) func(string, int) (bool, error)
	keep = func(prefix string) func(string, int) (bool, error) {
		return func(child string, parentFd int) (bool, error) {
			p := path.Join(prefix, child)
			if !written[p] {
				return false, nil
			}
			var st unix.Stat_t
			if err := unix.Fstatat(parentFd, child, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return false, fmt.Errorf("stat %s: %w", p, err)
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				return true, emptyDirAt(parentFd, child, keep(p))
			}
			return true, nil
		}
	}
	dirfd, name := t.fd, "."
	if dir != "" && dir != "." {
		fd, base, err := t.parent(dir)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		dirfd, name = fd, base
	}
	if err := emptyDirAt(dirfd, name, keep(strings.Trim(dir, "."))); err != nil {
		return fmt.Errorf("make %s opaque: %w", dir, err)
	}
	return nil
}

// writeEnrootFiles writes the generated files into the tree (replacing what the image
// had there) and creates the working directory, as `enroot import` does.
func (t *tree) writeEnrootFiles(files map[string]string, workdir string) error {
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if err := t.writeSmallFile(n, files[n], 0o644); err != nil {
			return fmt.Errorf("write /%s: %w", n, err)
		}
	}
	if rel, err := cleanName(workdir); err == nil && rel != "" {
		fd, err := t.mkdirAll(rel)
		if err != nil {
			return fmt.Errorf("create working directory %s: %w", workdir, err)
		}
		unix.Close(fd)
	}
	return nil
}

func (t *tree) writeSmallFile(rel, content string, mode uint32) error {
	dirfd, name, err := t.parent(path.Clean(rel))
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if err := replaceable(dirfd, name, false); err != nil {
		return err
	}
	if err := writeFileAt(dirfd, name, int64(len(content)), strings.NewReader(content)); err != nil {
		return err
	}
	return unix.Fchmodat(dirfd, name, mode, 0)
}
