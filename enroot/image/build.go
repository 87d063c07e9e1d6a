package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// build downloads the image's layers (concurrently, through the blob cache), reads the
// headers of each, in order, as it arrives, merges them with Enroot's generated files
// into the tree the image will hold (merge.go), then streams the surviving entries of
// every layer into mksquashfs: each byte is written once, into the squashfs, and a
// pull needs no more disk than its blobs and the image. The image appears in the store
// only when all of it succeeded; a failure leaves no trace but cached blobs of layers
// that verified.
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

	start := time.Now()
	stats := Stats{Layers: len(layers)}
	var prog progress
	defer prog.report(ctx, displayName(src.ref), len(layers), opts)()
	m := newMerger(newBudget(s.opts.Limits, s.tmp))
	if err := s.fetchAndIndex(ctx, m, layerRefs{layers, digests, diffIDs}, &prog, &stats); err != nil {
		return fmt.Errorf("pull %s: %w", displayName(src.ref), err)
	}
	generated, err := generatedLayer(enrootFiles(cfgFile.Config))
	if err != nil {
		return err
	}
	if err := m.indexLayer(len(layers), bytes.NewReader(generated)); err != nil {
		return fmt.Errorf("write Enroot's files: %w", err)
	}
	if rel, err := cleanName(cfgFile.Config.WorkingDir); err == nil && rel != "" {
		if err := m.mkdirAll(rel); err != nil {
			return fmt.Errorf("create working directory %s: %w", cfgFile.Config.WorkingDir, err)
		}
	}
	p := m.plan()
	open := func(i int) (io.ReadCloser, error) {
		if i == len(layers) {
			return io.NopCloser(bytes.NewReader(generated)), nil
		}
		r, _, err := s.openLayer(digests[i])
		return r, err
	}
	sqsh := filepath.Join(staging, "image.sqsh")
	squashStart := time.Now()
	free := newBudget(Limits{MinFreeBytes: s.opts.Limits.MinFreeBytes}, s.tmp)
	if err := streamSquashfs(ctx, p, len(layers)+1, open, sqsh, s.opts.SquashOptions, free); err != nil {
		return fmt.Errorf("pull %s: %w", displayName(src.ref), err)
	}
	stats.Squash = time.Since(squashStart)
	if err := s.commit(id, sqsh, cfgFile.Config, digests, p.allRoot); err != nil {
		return err
	}
	if opts.OnBuilt != nil {
		stats.Downloaded, stats.Total, stats.Bytes = prog.bytes.Load(), time.Since(start), p.bytes
		opts.OnBuilt(stats)
	}
	return nil
}

// generatedLayer is a tar stream of the files `enroot import` generates, root's and
// 0644, applied over the image's layers as one more layer.
func generatedLayer(files map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		hdr := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[name])), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, files[name]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
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

// layerRefs are a manifest's layer digests and the config's diff IDs (the digests of
// the uncompressed layers; empty when the config lists none).
type layerRefs struct {
	layers           []v1.Layer
	digests, diffIDs []string
}

// fetchAndIndex downloads every layer concurrently and indexes each, in order, as soon
// as it and the ones below it are in the cache.
func (s *Store) fetchAndIndex(ctx context.Context, m *merger, refs layerRefs, prog *progress, stats *Stats) error {
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
		for i := range digests {
			select {
			case <-ready[i]:
			case <-gctx.Done():
				return gctx.Err()
			}
			indexStart := time.Now()
			if err := s.indexBlob(m, i, digests[i], refs.diffIDs[i]); err != nil {
				err = fmt.Errorf("layer %d (%s): %w", i+1, digests[i], err)
				if errors.Is(err, errdefs.ErrResourceExhausted) {
					return err
				}
				return errdefs.WithKind(err, errdefs.ErrInvalidArgument)
			}
			stats.Index += time.Since(indexStart)
			prog.layers.Add(1)
		}
		return nil
	})
	return g.Wait()
}

// openLayer opens the tar stream of a cached layer blob; compressed says whether the
// blob was compressed (else the stream is the blob file, which a tar reader seeks in).
func (s *Store) openLayer(digest string) (io.ReadCloser, bool, error) {
	f, err := os.Open(s.blobs.path(digest))
	if err != nil {
		return nil, false, fmt.Errorf("open cached blob: %w", err)
	}
	r, compressed, err := openBlob(f)
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if !compressed {
		return f, false, nil
	}
	return layerReader{r, f}, true, nil
}

// layerReader is a layer's tar stream over its open blob file.
type layerReader struct {
	io.ReadCloser
	file *os.File
}

func (l layerReader) Close() error {
	err := l.ReadCloser.Close()
	if ferr := l.file.Close(); err == nil {
		err = ferr
	}
	return err
}

// indexBlob indexes cached layer i and checks its uncompressed content against the
// diff ID the image config gives (when it gives one). An uncompressed blob's content
// is its digest, verified as it was downloaded: it is not hashed again, and its
// headers are read without its files' content.
func (s *Store) indexBlob(m *merger, i int, digest, diffID string) error {
	r, compressed, err := s.openLayer(digest)
	if err != nil {
		return err
	}
	defer r.Close()
	if !compressed {
		if diffID != "" && diffID != digest {
			return fmt.Errorf("uncompressed layer has digest %s but the image config says %s", digest, diffID)
		}
		return m.indexLayer(i, r)
	}
	h := sha256.New()
	tee := io.TeeReader(r, h)
	if err := m.indexLayer(i, tee); err != nil {
		return err
	}
	// Drain trailing padding so that the decompressor verifies its checksum and the
	// hash is whole.
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
