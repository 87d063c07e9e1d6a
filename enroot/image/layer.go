package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// decompress returns the tar stream inside a layer blob, which may be gzip, zstd or
// uncompressed; the format is recognised by its magic bytes, as registries do not
// always label it.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read layer: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzip layer: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open zstd layer: %w", err)
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
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
