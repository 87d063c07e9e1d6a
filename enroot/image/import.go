package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// Import makes an image named ref (NAME[:TAG]) of a squashfs file that `enroot import`
// or `enroot export` wrote, read from f: the file is copied into the store as it is,
// and its /etc/rc, /etc/environment and /etc/fstab give the image's entrypoint,
// command, environment, working directory and volumes (enrootConfig). The image ID is
// the digest of the file, so importing the same file again only adds the name.
func (s *Store) Import(ctx context.Context, f *os.File, ref string) (*Image, error) {
	r, err := parseReference(ref, false)
	if err != nil {
		return nil, err
	}
	if _, ok := r.(name.Tag); !ok {
		return nil, fmt.Errorf("image name %q has a digest; an imported image is named NAME[:TAG]: %w", ref, errdefs.ErrInvalidArgument)
	}
	if err := checkSquashfs(f); err != nil {
		return nil, errdefs.WithKind(err, errdefs.ErrInvalidArgument)
	}
	tmp, err := os.CreateTemp(s.tmp, "import-*.sqsh")
	if err != nil {
		return nil, fmt.Errorf("create staging file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	if err := s.copyBounded(ctx, io.MultiWriter(tmp, h), io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return nil, fmt.Errorf("copy %s into the store: %w", f.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("copy %s into the store: %w", f.Name(), err)
	}
	id := "sha256:" + hex.EncodeToString(h.Sum(nil))

	s.mu.Lock()
	_, have := s.byID[id]
	s.mu.Unlock()
	if !have {
		// Read the copy, not f: what the record says is what the store holds.
		files, err := readEnrootFiles(ctx, tmp.Name())
		if err != nil {
			return nil, errdefs.WithKind(err, errdefs.ErrInvalidArgument)
		}
		allRoot, err := squashfsAllRoot(ctx, tmp.Name())
		if err != nil {
			return nil, errdefs.WithKind(err, errdefs.ErrInvalidArgument)
		}
		img := imageOf(id, enrootConfig(files), []string{}, allRoot)
		img.Source = SourceImport
		if err := s.commitImage(tmp.Name(), img); err != nil {
			return nil, err
		}
	}
	return s.name(id, r, "")
}

// copyBounded copies r to w, stopping when the store's filesystem would keep less free
// space than the configured minimum or the copy is larger than an image may be.
func (s *Store) copyBounded(ctx context.Context, w io.Writer, r io.Reader) error {
	b := newBudget(s.opts.Limits, s.tmp)
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := b.addBytes(int64(n)); err != nil {
				return err
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
