package image

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// enrootLayoutSuffix names an image's Enroot-layout copy: <hex>.enroot.sqsh.
const enrootLayoutSuffix = ".enroot.sqsh"

// EnrootFile returns the squashfs a Slurm job runs for image id, in Enroot's layout:
// every file root's, as `enroot import` writes it (mksquashfs -all-root), so that a job
// of any user, root included, reads each file as it would from Enroot's own import.
// That is the image's own file when its files are all root's already (most images);
// otherwise a copy is made from it the first time it is asked for, kept with the image
// (ImageFsInfo counts it) and removed with it.
func (s *Store) EnrootFile(ctx context.Context, id string) (string, error) {
	img, err := s.Get(id)
	if err != nil {
		return "", err
	}
	if img.Source == SourceShared {
		return img.Squashfs, nil // the site's file, used as it is, as pyxis uses it
	}
	if img.AllRoot == nil {
		allRoot, err := squashfsAllRoot(ctx, img.Squashfs)
		if err != nil {
			return "", err
		}
		if img, err = s.update(id, func(img *Image) { img.AllRoot = &allRoot }); err != nil {
			return "", err
		}
	}
	if *img.AllRoot {
		return img.Squashfs, nil
	}
	if img.EnrootSquashfs != "" {
		return img.EnrootSquashfs, nil
	}
	path, err, _ := s.builds.Do("enroot-layout "+id, func() (any, error) { return s.buildEnrootLayout(ctx, img) })
	if err != nil {
		return "", err
	}
	return path.(string), nil
}

// buildEnrootLayout writes the Enroot-layout copy of img: its tree unpacked from the
// image's squashfs (the cached layers, applied) and squashed again with -all-root.
func (s *Store) buildEnrootLayout(ctx context.Context, img *Image) (string, error) {
	if cur, err := s.Get(img.ID); err == nil && cur.EnrootSquashfs != "" {
		return cur.EnrootSquashfs, nil // another caller built it
	}
	staging, err := os.MkdirTemp(s.tmp, "enroot-layout-")
	if err != nil {
		return "", fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(staging)
	rootfs := filepath.Join(staging, "rootfs")
	cmd := exec.CommandContext(ctx, "unsquashfs", "-no-progress", "-d", rootfs, img.Squashfs)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("unpack %s for its Enroot layout: %w: %s", img.Squashfs, err, lastLines(out.String()))
	}
	sqsh := filepath.Join(staging, "image.sqsh")
	if err := squash(ctx, rootfs, sqsh, "-all-root "+s.opts.SquashOptions); err != nil {
		return "", err
	}
	st, err := os.Stat(sqsh)
	if err != nil {
		return "", fmt.Errorf("stat squashfs: %w", err)
	}
	if err := os.Chmod(sqsh, 0o644); err != nil { //nolint:gosec // behind the 0700 images directory; jobs reach it through their links
		return "", err
	}
	final := filepath.Join(s.images, strings.TrimPrefix(img.ID, "sha256:")+enrootLayoutSuffix)
	if err := os.Rename(sqsh, final); err != nil {
		return "", fmt.Errorf("store squashfs: %w", err)
	}
	if _, err := s.update(img.ID, func(img *Image) { img.EnrootSquashfs, img.EnrootSize = final, st.Size() }); err != nil {
		os.Remove(final)
		return "", err
	}
	return final, nil
}

// update changes the record of image id under the store's lock and saves it.
func (s *Store) update(id string, change func(*Image)) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.byID[id]
	if !ok {
		return nil, fmt.Errorf("image %s was removed: %w", id, errdefs.ErrNotFound)
	}
	updated := img.clone()
	change(updated)
	if err := s.saveLocked(updated); err != nil {
		return nil, err
	}
	return updated.clone(), nil
}

// lastLines is the end of a tool's output, for an error message.
func lastLines(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// inode is the device and inode number of a file, to know hard links of it.
type inode struct{ dev, ino uint64 }

func inodeOf(info fs.FileInfo) (inode, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return inode{}, false
	}
	return inode{uint64(st.Dev), st.Ino}, true //nolint:unconvert // Dev is not uint64 everywhere
}
