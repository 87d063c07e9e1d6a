package diskusage

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Usage is the space (allocated blocks, so a sparse file counts what it holds) and the
// number of inodes under a directory, the directory included.
type Usage struct {
	Bytes, Inodes uint64
}

// Of walks dir. Entries removed during the walk are skipped; a missing dir is zero.
func Of(dir string) (Usage, error) {
	var u Usage
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		u.Inodes++
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			u.Bytes += uint64(st.Blocks) * 512
		} else {
			u.Bytes += uint64(info.Size())
		}
		return nil
	})
	if err != nil {
		return Usage{}, fmt.Errorf("measure %s: %w", dir, err)
	}
	return u, nil
}

// FS is the filesystem a directory is on: its size, its inodes, and its device.
type FS struct {
	Bytes, Inodes, InodesFree uint64
	Major, Minor              uint64
}

// Filesystem reads the filesystem dir is on.
func Filesystem(dir string) (FS, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return FS{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return FS{}, fmt.Errorf("stat %s: %w", dir, err)
	}
	return FS{Bytes: fs.Blocks * uint64(fs.Bsize), Inodes: fs.Files, InodesFree: fs.Ffree,
		Major: uint64(unix.Major(st.Dev)), Minor: uint64(unix.Minor(st.Dev))}, nil
}
