package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

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
