package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sync/singleflight"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/atomicfile"
	"github.com/enroot-cri/enroot-cri/internal/diskusage"
)

// Options configure a Store.
type Options struct {
	// Root holds images/ (<hex>.sqsh and <hex>.json), blobs/ and tmp/.
	Root string
	// Hosts is the per-registry configuration; the key "*" matches any host.
	Hosts map[string]Host
	// SquashOptions are the mksquashfs options (ENROOT_SQUASH_OPTIONS).
	SquashOptions string
	// MaxConcurrentDownloads bounds layer downloads across all pulls.
	MaxConcurrentDownloads int
	// UserAgent is sent to registries.
	UserAgent string
	// Limits bound each pull's unpacked size, entries and the free space it keeps;
	// PullTimeout its wall time (0: none).
	Limits      Limits
	PullTimeout time.Duration
	// Shared maps a registry name to a directory of Enroot images served under it
	// (shared.go).
	Shared map[string]string
	// Jobs holds the links the pyxis importer hands Slurm jobs (jobs.go); it must be
	// on the filesystem of Root/images.
	Jobs string
}

// Store is the squashfs image store. Its methods are safe for concurrent use.
type Store struct {
	opts    Options
	images  string // directory of <hex>.sqsh and <hex>.json
	tmp     string
	blobs   *blobs
	builds  singleflight.Group // one build per image ID
	mu      sync.Mutex
	byID    map[string]*Image
	pulling map[string]int // blob digests in-flight pulls still need
	// quarantined are records Open could not read (it moved them aside).
	quarantined []Quarantined
	shared      sharedImages
	jobs        jobLinks
}

// Open opens (creating if needed) the store under opts.Root and recovers it: records
// are loaded, and whatever an interrupted pull left behind is removed.
func Open(opts Options) (*Store, error) {
	if opts.MaxConcurrentDownloads < 1 {
		opts.MaxConcurrentDownloads = 1
	}
	s := &Store{
		opts:    opts,
		images:  filepath.Join(opts.Root, "images"),
		tmp:     filepath.Join(opts.Root, "tmp"),
		blobs:   newBlobs(filepath.Join(opts.Root, "blobs"), opts.MaxConcurrentDownloads),
		byID:    map[string]*Image{},
		pulling: map[string]int{},
	}
	for _, d := range []string{s.images, s.tmp, s.blobs.dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create image store: %w", err)
		}
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

// recover loads every image record and removes debris: what interrupted pulls left in
// tmp/, temporary files, squashfs files without a record, and blobs no image uses.
func (s *Store) recover() error {
	if err := os.RemoveAll(s.tmp); err != nil {
		return fmt.Errorf("remove interrupted pulls: %w", err)
	}
	if err := os.MkdirAll(s.tmp, 0o700); err != nil {
		return fmt.Errorf("create image store: %w", err)
	}
	entries, err := os.ReadDir(s.images)
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	for _, e := range entries {
		if hex, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			img, err := readImage(filepath.Join(s.images, e.Name()))
			if err == nil && img.ID != "sha256:"+hex {
				err = fmt.Errorf("image record %s names image %s", e.Name(), img.ID)
			}
			if err != nil {
				if err := s.quarantine(hex, err); err != nil {
					return err
				}
				continue
			}
			s.byID[img.ID] = img
		}
	}
	for _, e := range entries {
		if e.IsDir() {
			continue // the quarantine
		}
		if hex, ok := strings.CutSuffix(e.Name(), enrootLayoutSuffix); ok {
			// An Enroot-layout copy stays only when its image's record names it.
			if img := s.byID["sha256:"+hex]; img != nil && img.EnrootSquashfs == filepath.Join(s.images, e.Name()) {
				continue
			}
			if err := os.Remove(filepath.Join(s.images, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
			}
			continue
		}
		hex := strings.TrimSuffix(strings.TrimSuffix(e.Name(), ".json"), ".sqsh")
		if _, ok := s.byID["sha256:"+hex]; !ok || strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			if err := os.Remove(filepath.Join(s.images, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
			}
		}
	}
	if err := s.recoverJobs(); err != nil {
		return err
	}
	return s.blobs.prune(s.blobsInUseLocked())
}

// Quarantined is an image record the store could not read at start: it and its
// squashfs were moved to Path, and the store serves the other images.
type Quarantined struct {
	Path string
	Err  error
}

// Quarantined lists the records set aside when the store opened.
func (s *Store) Quarantined() []Quarantined { return s.quarantined }

// quarantine moves an unreadable record and its squashfs to images/quarantine.
func (s *Store) quarantine(hex string, why error) error {
	dir := filepath.Join(s.images, "quarantine", time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("quarantine image record %s: %w", hex, err)
	}
	for _, name := range []string{hex + ".json", hex + ".sqsh"} {
		if err := os.Rename(filepath.Join(s.images, name), filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("quarantine %s: %w", name, err)
		}
	}
	s.quarantined = append(s.quarantined, Quarantined{Path: dir, Err: why})
	return nil
}

func (s *Store) blobsInUseLocked() map[string]bool {
	keep := map[string]bool{}
	for _, img := range s.byID {
		for _, l := range img.Layers {
			keep[l] = true
		}
	}
	for d := range s.pulling {
		keep[d] = true
	}
	return keep
}

// List returns every image, those of the shared directories included, sorted by ID.
func (s *Store) List() []*Image {
	s.mu.Lock()
	out := make([]*Image, 0, len(s.byID))
	for _, img := range s.byID {
		out = append(out, img.clone())
	}
	s.mu.Unlock()
	out = append(out, s.listShared(context.Background())...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return slices.CompactFunc(out, func(a, b *Image) bool { return a.ID == b.ID })
}

// Get finds an image by ID ("sha256:<hex>" or "<hex>"), unique ID prefix, tag or digest
// reference, in the store and then in the shared directories. An unknown image is
// errdefs.ErrNotFound.
func (s *Store) Get(ref string) (*Image, error) {
	s.mu.Lock()
	img, _, err := s.resolveLocked(ref)
	if err == nil {
		img = img.clone()
	}
	s.mu.Unlock()
	if err == nil || !errors.Is(err, errdefs.ErrNotFound) || len(s.opts.Shared) == 0 {
		return img, err
	}
	if shared, serr := s.findShared(ref); serr == nil || !errors.Is(serr, errdefs.ErrNotFound) {
		return shared, serr
	}
	return nil, err
}

// findShared finds an image of the shared directories by name or ID. It does not take
// s.mu.
func (s *Store) findShared(ref string) (*Image, error) {
	ctx := context.Background()
	if r, err := parseReference(ref, false); err == nil {
		if dir, ok := s.sharedDir(r); ok {
			return s.sharedGet(ctx, r, dir)
		}
	}
	if img, ok := s.sharedByID(ctx, ref); ok {
		return img, nil
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// resolveLocked returns the image and, when ref is a tag or digest reference rather
// than an ID, its normalised name.
func (s *Store) resolveLocked(ref string) (*Image, string, error) {
	if m := fullID.FindStringSubmatch(ref); m != nil {
		if img, ok := s.byID["sha256:"+m[2]]; ok {
			return img, "", nil
		}
	}
	if r, err := parseReference(ref, false); err == nil {
		want := displayName(r)
		for _, img := range s.byID {
			if slices.Contains(img.RepoTags, want) || slices.Contains(img.RepoDigests, want) {
				return img, want, nil
			}
		}
	}
	if m := idPrefix.FindStringSubmatch(ref); m != nil {
		var found *Image
		for id, img := range s.byID {
			if strings.HasPrefix(id, "sha256:"+m[2]) {
				if found != nil {
					return nil, "", fmt.Errorf("image ID prefix %q is ambiguous: %w", ref, errdefs.ErrInvalidArgument)
				}
				found = img
			}
		}
		if found != nil {
			return found, "", nil
		}
	}
	return nil, "", fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// Remove removes an image. By tag, only that tag goes unless it was the image's last
// name; by ID or digest, the whole image goes. An unknown image is not an error.
func (s *Store) Remove(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, byName, err := s.resolveLocked(ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		if shared, serr := s.findShared(ref); serr == nil {
			return fmt.Errorf("image %q is the file %s of a shared image directory (images.shared), which enroot-cri never removes: %w",
				ref, shared.Squashfs, errdefs.ErrFailedPrecondition)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if byName != "" && !strings.Contains(byName, "@") && len(img.RepoTags) > 1 {
		updated := img.clone()
		updated.RepoTags = withoutName(updated.RepoTags, byName)
		return s.saveLocked(updated)
	}
	if jobs := s.jobs.holding(img); len(jobs) > 0 {
		return fmt.Errorf("image %s is in use by Slurm job step %s until the pyxis importer releases it: %w",
			img.ID, strings.Join(jobs, ", "), errdefs.ErrFailedPrecondition)
	}
	return s.deleteLocked(img)
}

func (s *Store) deleteLocked(img *Image) error {
	hex := strings.TrimPrefix(img.ID, "sha256:")
	// The record goes first: without it the squashfs file is debris that recovery removes.
	if err := os.Remove(filepath.Join(s.images, hex+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove image %s: %w", img.ID, err)
	}
	delete(s.byID, img.ID)
	for _, f := range []string{img.Squashfs, img.EnrootSquashfs} {
		if f == "" {
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove image %s: %w", img.ID, err)
		}
	}
	return s.blobs.prune(s.blobsInUseLocked())
}

func (s *Store) saveLocked(img *Image) error {
	hex := strings.TrimPrefix(img.ID, "sha256:")
	if err := atomicfile.WriteJSON(filepath.Join(s.images, hex+".json"), img); err != nil {
		return fmt.Errorf("save image %s: %w", img.ID, err)
	}
	s.byID[img.ID] = img
	return nil
}

// name records that tag (and digest) now name the image with id; a tag moves off any
// image that had it.
func (s *Store) name(id string, r name.Reference, repoDigest string) (*Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.byID[id]
	if !ok {
		return nil, fmt.Errorf("image %s vanished while it was being named: %w", id, errdefs.ErrUnavailable)
	}
	updated := img.clone()
	if _, isTag := r.(name.Tag); isTag {
		tag := displayName(r)
		for _, other := range s.byID {
			if other.ID != id && slices.Contains(other.RepoTags, tag) {
				moved := other.clone()
				moved.RepoTags = withoutName(moved.RepoTags, tag)
				if err := s.saveLocked(moved); err != nil {
					return nil, err
				}
			}
		}
		updated.RepoTags = addName(updated.RepoTags, tag)
	}
	if repoDigest != "" {
		updated.RepoDigests = addName(updated.RepoDigests, repoDigest)
	}
	if err := s.saveLocked(updated); err != nil {
		return nil, err
	}
	return updated.clone(), nil
}

// Usage is the disk use of the store.
type Usage struct {
	Mountpoint string
	Bytes      uint64
	Inodes     uint64
}

// Usage walks the store and adds up allocated bytes and inodes.
func (s *Store) Usage() (Usage, error) {
	u, err := diskusage.Of(s.opts.Root)
	if err != nil {
		return Usage{}, fmt.Errorf("measure image store: %w", err)
	}
	return Usage{Mountpoint: s.opts.Root, Bytes: u.Bytes, Inodes: u.Inodes}, nil
}
