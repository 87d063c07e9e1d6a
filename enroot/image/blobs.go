package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/singleflight"

	"github.com/enroot-cri/enroot-cri/internal/atomicfile"
)

// blobs is the cache of compressed layer blobs, one file per digest, shared by every
// pull. A blob file exists only once its content matched its digest.
type blobs struct {
	dir     string
	slots   chan struct{} // bounds concurrent downloads across all pulls
	flights singleflight.Group
}

func newBlobs(dir string, maxDownloads int) *blobs {
	return &blobs{dir: dir, slots: make(chan struct{}, maxDownloads)}
}

func (b *blobs) path(digest string) string {
	return filepath.Join(b.dir, strings.Replace(digest, ":", "-", 1))
}

// fetch makes sure the blob is in the cache, downloading it with open at most once even
// when several pulls ask at the same time. counted receives the bytes as they arrive.
func (b *blobs) fetch(ctx context.Context, digest string, open func() (io.ReadCloser, error), counted func(int64)) error {
	if _, err := os.Stat(b.path(digest)); err == nil {
		return nil
	}
	ch := b.flights.DoChan(digest, func() (any, error) {
		if _, err := os.Stat(b.path(digest)); err == nil {
			return nil, nil
		}
		select {
		case b.slots <- struct{}{}:
			defer func() { <-b.slots }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, b.download(digest, open, counted)
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *blobs) download(digest string, open func() (io.ReadCloser, error), counted func(int64)) error {
	algo, want, ok := strings.Cut(digest, ":")
	if !ok || algo != "sha256" {
		return fmt.Errorf("blob %s: only sha256 digests are supported", digest)
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("fetch blob %s: %w", digest, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(b.dir, atomicfile.TempPrefix+"blob-*")
	if err != nil {
		return fmt.Errorf("store blob %s: %w", digest, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h, countWriter(counted)), rc); err != nil {
		return fmt.Errorf("fetch blob %s: %w", digest, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("blob %s arrived with digest sha256:%s; refusing it", digest, got)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store blob %s: %w", digest, err)
	}
	if err := os.Rename(tmp.Name(), b.path(digest)); err != nil {
		return fmt.Errorf("store blob %s: %w", digest, err)
	}
	return nil
}

// prune removes every cached blob not in keep, and temporaries a crash left.
func (b *blobs) prune(keep map[string]bool) error {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return fmt.Errorf("list blobs: %w", err)
	}
	var errs []error
	for _, e := range entries {
		digest := strings.Replace(e.Name(), "-", ":", 1)
		if keep[digest] {
			continue
		}
		if err := os.Remove(filepath.Join(b.dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type countWriter func(int64)

func (c countWriter) Write(p []byte) (int, error) {
	if c != nil {
		c(int64(len(p)))
	}
	return len(p), nil
}
