package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// build downloads the image's layers (concurrently, through the blob cache), applies
// them in order to a staging tree as each arrives, adds Enroot's generated files and
// writes the squashfs. The image appears in the store only when all of it succeeded;
// a failure leaves no trace but cached blobs of layers that verified.
func (s *Store) build(ctx context.Context, src *source, id string, opts PullOptions) (err error) {
	cfgFile, err := src.image.ConfigFile()
	if err != nil {
		return fmt.Errorf("read image config of %s: %w", displayName(src.ref), classify(err))
	}
	layers, err := src.image.Layers()
	if err != nil {
		return fmt.Errorf("read manifest of %s: %w", displayName(src.ref), classify(err))
	}
	digests := make([]string, len(layers))
	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("layer %d of %s: %w", i, displayName(src.ref), err)
		}
		digests[i] = d.String()
		if i < len(cfgFile.RootFS.DiffIDs) {
			diffIDs[i] = cfgFile.RootFS.DiffIDs[i].String()
		}
	}
	defer s.holdBlobs(digests)()

	staging, err := os.MkdirTemp(s.tmp, "pull-")
	if err != nil {
		return fmt.Errorf("create staging directory: %w", err)
	}
	defer os.RemoveAll(staging)
	rootfs := filepath.Join(staging, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return fmt.Errorf("create staging directory: %w", err)
	}

	start := time.Now()
	stats := Stats{Layers: len(layers)}
	var prog progress
	defer prog.report(ctx, displayName(src.ref), len(layers), opts)()
	if err := s.fetchAndApply(ctx, rootfs, layerRefs{layers, digests, diffIDs}, &prog, &stats); err != nil {
		return fmt.Errorf("pull %s: %w", displayName(src.ref), err)
	}
	t, err := openTree(rootfs)
	if err != nil {
		return err
	}
	err = t.writeEnrootFiles(enrootFiles(cfgFile.Config), cfgFile.Config.WorkingDir)
	allRoot := err == nil && ownedByRoot(rootfs)
	t.Close()
	if err != nil {
		return err
	}
	sqsh := filepath.Join(staging, "image.sqsh")
	squashStart := time.Now()
	if err := squash(ctx, rootfs, sqsh, s.opts.SquashOptions); err != nil {
		return err
	}
	stats.Squash = time.Since(squashStart)
	if err := s.commit(id, sqsh, cfgFile.Config, digests, allRoot); err != nil {
		return err
	}
	if opts.OnBuilt != nil {
		stats.Downloaded, stats.Total = prog.bytes.Load(), time.Since(start)
		stats.TreeBytes = treeSize(rootfs)
		opts.OnBuilt(stats)
	}
	return nil
}

// ownedByRoot says whether every entry under dir belongs to root:root.
func ownedByRoot(dir string) bool {
	all := true
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			all = false
			return filepath.SkipAll
		}
		info, err := d.Info()
		if err != nil {
			all = false
			return filepath.SkipAll
		}
		if st, ok := info.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 || st.Gid != 0 {
			all = false
			return filepath.SkipAll
		}
		return nil
	})
	return all
}

// treeSize adds up the apparent size of the regular files under dir.
func treeSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// holdBlobs keeps blob pruning off the digests until the returned func runs.
func (s *Store) holdBlobs(digests []string) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range digests {
		s.pulling[d]++
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, d := range digests {
			if s.pulling[d]--; s.pulling[d] <= 0 {
				delete(s.pulling, d)
			}
		}
	}
}

// fetchAndApply downloads every layer concurrently and applies each, in order, as soon
// as it and the ones below it are in the cache.
// layerRefs are a manifest's layer digests and the config's diff IDs (the digests of
// the uncompressed layers; empty when the config lists none).
type layerRefs struct {
	layers           []v1.Layer
	digests, diffIDs []string
}

func (s *Store) fetchAndApply(ctx context.Context, rootfs string, refs layerRefs, prog *progress, stats *Stats) error {
	digests := refs.digests
	start := time.Now()
	var mu sync.Mutex // guards stats.Download, the time the last layer was cached
	g, gctx := errgroup.WithContext(ctx)
	ready := make([]chan struct{}, len(digests))
	for i := range digests {
		ready[i] = make(chan struct{})
		g.Go(func() error {
			err := s.blobs.fetch(gctx, digests[i], refs.layers[i].Compressed, func(n int64) { prog.bytes.Add(n) })
			if err != nil {
				return classify(err)
			}
			mu.Lock()
			stats.Download = max(stats.Download, time.Since(start))
			mu.Unlock()
			close(ready[i])
			return nil
		})
	}
	g.Go(func() error {
		t, err := openTree(rootfs)
		if err != nil {
			return err
		}
		defer t.Close()
		t.budget = newBudget(s.opts.Limits, rootfs)
		for i := range digests {
			select {
			case <-ready[i]:
			case <-gctx.Done():
				return gctx.Err()
			}
			applyStart := time.Now()
			if err := s.applyBlob(t, digests[i], refs.diffIDs[i]); err != nil {
				err = fmt.Errorf("layer %d (%s): %w", i+1, digests[i], err)
				if errors.Is(err, errdefs.ErrResourceExhausted) {
					return err
				}
				return errdefs.WithKind(err, errdefs.ErrInvalidArgument)
			}
			stats.Apply += time.Since(applyStart)
			prog.layers.Add(1)
		}
		return nil
	})
	return g.Wait()
}

// applyBlob applies a cached layer and checks its uncompressed content against the
// diff ID the image config gives (when it gives one).
func (s *Store) applyBlob(t *tree, digest, diffID string) error {
	f, err := os.Open(s.blobs.path(digest))
	if err != nil {
		return fmt.Errorf("open cached blob: %w", err)
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return err
	}
	defer r.Close()
	h := sha256.New()
	tee := io.TeeReader(r, h)
	if err := t.applyLayer(tee); err != nil {
		return err
	}
	// Drain trailing padding so that gzip verifies its checksum and the hash is whole.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); diffID != "" && got != diffID {
		return fmt.Errorf("uncompressed layer has digest %s but the image config says %s", got, diffID)
	}
	return nil
}

// squashArgs is the mksquashfs command line that writes dir to out. Ownership is kept
// (unlike `enroot import`, which runs unprivileged and uses -all-root) because pods run
// as the users their image's files belong to.
func squashArgs(dir, out, options string) []string {
	args := []string{dir, out, "-noappend", "-no-progress"}
	return append(args, strings.Fields(options)...)
}

func squash(ctx context.Context, dir, out, options string) error {
	cmd := exec.CommandContext(ctx, "mksquashfs", squashArgs(dir, out, options)...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(output.String())
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		return fmt.Errorf("mksquashfs (options %q): %w: %s", options, err, msg)
	}
	return nil
}

// commit moves the squashfs into the store and writes its record, the commit point.
// The file is world-readable (0644) behind the store's root-only directory: a Slurm job
// reaches it only through the hard link the pyxis importer makes for its user.
func (s *Store) commit(id, sqsh string, cfg v1.Config, layers []string, allRoot bool) error {
	return s.commitImage(sqsh, imageOf(id, cfg, layers, allRoot))
}

// imageOf is the record of a new image of the store.
func imageOf(id string, cfg v1.Config, layers []string, allRoot bool) *Image {
	return &Image{
		Version: metadataVersion, ID: id, RepoTags: []string{}, RepoDigests: []string{},
		User: cfg.User, Env: cfg.Env, Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd,
		WorkingDir: cfg.WorkingDir, Volumes: slices.Sorted(maps.Keys(cfg.Volumes)), Labels: cfg.Labels,
		StopSignal: cfg.StopSignal, Layers: layers, Created: time.Now().UTC(), AllRoot: &allRoot,
	}
}

// commitImage moves sqsh into the store as img's file and saves img.
func (s *Store) commitImage(sqsh string, img *Image) error {
	final := filepath.Join(s.images, strings.TrimPrefix(img.ID, "sha256:")+".sqsh")
	st, err := os.Stat(sqsh)
	if err != nil {
		return fmt.Errorf("stat squashfs: %w", err)
	}
	if err := os.Chmod(sqsh, 0o644); err != nil { //nolint:gosec // behind the 0700 images directory; jobs reach it through their links
		return fmt.Errorf("store squashfs: %w", err)
	}
	if err := os.Rename(sqsh, final); err != nil {
		return fmt.Errorf("store squashfs: %w", err)
	}
	img.Size, img.Squashfs = st.Size(), final
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.saveLocked(img); err != nil {
		os.Remove(final)
		return err
	}
	return nil
}
