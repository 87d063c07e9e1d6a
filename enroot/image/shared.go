package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// A shared image directory is a site's directory of Enroot images (the files `enroot
// import` names REPO+TAG.sqsh, REPO's slashes as "+"), often on Lustre, GPFS or NFS and
// read-only, served under a registry name of the site's choice: with "sqsh.site" for
// /shared/images, the image sqsh.site/nvidia/pytorch:24.05 is
// /shared/images/nvidia+pytorch+24.05.sqsh (and sqsh.site/ubuntu, tag latest, is
// ubuntu+latest.sqsh or else ubuntu.sqsh). A container mounts the file where it is:
// nothing is copied, unpacked or written, and the store keeps no record of it.
//
// Such an image's ID is a digest of the file's path, device, inode, size and
// modification time rather than of its content (reading tens of gigabytes of a
// network filesystem to name a file would cost more than running it), so replacing
// the file makes a new image.

// sharedFile is what the store knows of one shared image file.
type sharedFile struct {
	key string // path, device, inode, size and mtime
	img *Image // Env, Entrypoint and the rest filled in once read (configured)
	// configured: the image's Enroot files were read.
	configured bool
}

// sharedImages caches what was read of shared image files.
type sharedImages struct {
	mu    sync.Mutex
	files map[string]*sharedFile // by path
}

// sharedDir returns the directory served under r's registry, if any.
func (s *Store) sharedDir(r name.Reference) (string, bool) {
	dir, ok := s.opts.Shared[hostKey(r)]
	return dir, ok
}

// sharedCandidates are the file names a shared image reference may have.
func sharedCandidates(r name.Reference) ([]string, error) {
	tag, ok := r.(name.Tag)
	if !ok {
		return nil, fmt.Errorf("image %q: images of a shared image directory are named by tag, not digest: %w",
			r.String(), errdefs.ErrInvalidArgument)
	}
	repo := strings.ReplaceAll(r.Context().RepositoryStr(), "/", "+")
	names := []string{repo + "+" + tag.TagStr() + ".sqsh"}
	if tag.TagStr() == "latest" {
		names = append(names, repo+".sqsh") // enroot import without a tag
	}
	for _, n := range names {
		if strings.ContainsAny(n, "/\x00") || strings.HasPrefix(n, ".") {
			return nil, fmt.Errorf("image %q maps to no valid file name: %w", r.String(), errdefs.ErrInvalidArgument)
		}
	}
	return names, nil
}

// sharedGet finds the image r names in its registry's shared directory.
func (s *Store) sharedGet(ctx context.Context, r name.Reference, dir string) (*Image, error) {
	names, err := sharedCandidates(r)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		path := filepath.Join(dir, n)
		img, err := s.sharedImage(ctx, path, displayName(r), true)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return img, nil
	}
	return nil, fmt.Errorf("image %q: no %s in the shared image directory %s (images.shared): %w",
		displayName(r), strings.Join(names, " or "), dir, errdefs.ErrNotFound)
}

// sharedImage describes the shared image file at path; tag is a name to list it by
// besides the one its file name gives. configured asks for its configuration too.
func (s *Store) sharedImage(ctx context.Context, path, tag string, configured bool) (*Image, error) {
	st, err := os.Stat(path) // a site may link its images from elsewhere
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %w", path, fs.ErrNotExist)
	}
	sys, _ := st.Sys().(*syscall.Stat_t)
	if sys == nil {
		return nil, fmt.Errorf("stat %s: no inode", path)
	}
	key := fmt.Sprintf("%s\x00%d\x00%d\x00%d\x00%d", path, sys.Dev, sys.Ino, st.Size(), st.ModTime().UnixNano()) //nolint:unconvert // Dev differs by platform

	s.shared.mu.Lock()
	f := s.shared.files[path]
	if f == nil || f.key != key {
		sum := sha256.Sum256([]byte("enroot-cri shared image\x00" + key))
		f = &sharedFile{key: key, img: &Image{
			Version: metadataVersion, ID: "sha256:" + hex.EncodeToString(sum[:]), Source: SourceShared,
			RepoTags: []string{}, RepoDigests: []string{}, Layers: []string{},
			Size: st.Size(), Created: st.ModTime().UTC(), Squashfs: path,
		}}
		if n, ok := s.sharedName(path); ok {
			f.img.RepoTags = append(f.img.RepoTags, n)
		}
		if s.shared.files == nil {
			s.shared.files = map[string]*sharedFile{}
		}
		s.shared.files[path] = f
	}
	if tag != "" {
		f.img.RepoTags = addName(f.img.RepoTags, tag)
	}
	img, done := f.img.clone(), f.configured
	s.shared.mu.Unlock()

	if !configured || done {
		return img, nil
	}
	files, err := readEnrootFiles(ctx, path)
	if err != nil {
		return nil, errdefs.WithKind(fmt.Errorf("shared image %s: %w", path, err), errdefs.ErrInvalidArgument)
	}
	cfg := enrootConfig(files)
	s.shared.mu.Lock()
	defer s.shared.mu.Unlock()
	if cur := s.shared.files[path]; cur != nil && cur.key == key {
		cur.img.Env, cur.img.Entrypoint, cur.img.Cmd, cur.img.WorkingDir = cfg.Env, cfg.Entrypoint, cfg.Cmd, cfg.WorkingDir
		cur.img.Volumes = sortedKeys(cfg.Volumes)
		cur.configured = true
		return cur.img.clone(), nil
	}
	img.Env, img.Entrypoint, img.Cmd, img.WorkingDir, img.Volumes = cfg.Env, cfg.Entrypoint, cfg.Cmd, cfg.WorkingDir, sortedKeys(cfg.Volumes)
	return img, nil
}

// sharedName is the image name a shared file's name gives ("nvidia+pytorch+24.05.sqsh"
// in the directory of sqsh.site is sqsh.site/nvidia/pytorch:24.05; "ubuntu.sqsh" is
// sqsh.site/ubuntu:latest), when it makes a valid reference.
func (s *Store) sharedName(path string) (string, bool) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	stem, ok := strings.CutSuffix(base, ".sqsh")
	if !ok || stem == "" {
		return "", false
	}
	for registry, d := range s.opts.Shared {
		if filepath.Clean(d) != dir {
			continue
		}
		repo, tag := stem, "latest"
		if i := strings.LastIndex(stem, "+"); i >= 0 {
			repo, tag = stem[:i], stem[i+1:]
		}
		r, err := parseReference(registry+"/"+strings.ReplaceAll(repo, "+", "/")+":"+tag, false)
		if err != nil {
			return "", false
		}
		return displayName(r), true
	}
	return "", false
}

// listShared describes every image file of the shared directories.
func (s *Store) listShared(ctx context.Context) []*Image {
	var out []*Image
	for _, registry := range sortedKeys(s.opts.Shared) {
		dir := s.opts.Shared[registry]
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // unmounted or unreadable: the images are not there
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".sqsh") {
				continue
			}
			path := filepath.Join(filepath.Clean(dir), e.Name())
			if _, ok := s.sharedName(path); !ok {
				continue
			}
			if img, err := s.sharedImage(ctx, path, "", false); err == nil {
				out = append(out, img)
			}
		}
	}
	return out
}

// sharedByID finds a shared image by ID (or unique ID prefix).
func (s *Store) sharedByID(ctx context.Context, ref string) (*Image, bool) {
	m := idPrefix.FindStringSubmatch(ref)
	if m == nil {
		m = fullID.FindStringSubmatch(ref)
	}
	if m == nil {
		return nil, false
	}
	for _, img := range s.listShared(ctx) {
		if strings.HasPrefix(img.ID, "sha256:"+m[2]) {
			full, err := s.sharedImage(ctx, img.Squashfs, "", true)
			return full, err == nil
		}
	}
	return nil, false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
