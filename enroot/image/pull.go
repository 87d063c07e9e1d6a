package image

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// Auth are registry credentials as the CRI passes them.
type Auth struct {
	Username      string
	Password      string
	Auth          string // base64 "user:password"
	IdentityToken string
	RegistryToken string
}

func (a Auth) authenticator() authn.Authenticator {
	if a == (Auth{}) {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig(a))
}

// Progress is a pull's state, reported every few seconds while it runs.
type Progress struct {
	Image      string
	LayersDone int
	Layers     int
	Bytes      int64 // downloaded so far
	Elapsed    time.Duration
}

// Stats are the figures of one image build, for logs and benchmarks.
type Stats struct {
	Layers     int
	Downloaded int64         // compressed bytes fetched (cached layers are not counted)
	Download   time.Duration // from the start until the last layer was cached
	Index      time.Duration // reading the layers' headers to merge them, overlapping the downloads
	Squash     time.Duration // streaming the merged layers through mksquashfs
	Bytes      int64         // the content of the image's regular files
	Total      time.Duration
}

// PullOptions are a pull's optional parts.
type PullOptions struct {
	Auth Auth
	// OnProgress, when set, receives the pull's progress every ProgressInterval.
	OnProgress       func(Progress)
	ProgressInterval time.Duration
	// OnBuilt, when set, receives the figures of the build when this pull built the
	// image (not when the store had it or another pull built it).
	OnBuilt func(Stats)
}

// source is a resolved image on one registry (the host itself or a mirror).
type source struct {
	ref     name.Reference // the name as asked, for RepoTags and RepoDigests
	image   v1.Image
	topHash v1.Hash // digest of what the name points at (an index or a manifest)
}

// Pull makes the image named ref available and returns it. The image is built once
// even when several pulls of it run at the same time; pulling an image the store has
// only adds the name.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	if looksLikeFile(ref) {
		return nil, fmt.Errorf("image %q is a file, not a registry image: make an image of an Enroot squashfs with "+
			"`enroot-cri images import FILE.sqsh NAME[:TAG]`, or serve its directory under a registry name (images.shared): %w",
			ref, errdefs.ErrInvalidArgument)
	}
	r, err := parseReference(ref, false)
	if err != nil {
		return nil, err
	}
	if dir, ok := s.sharedDir(r); ok {
		return s.sharedGet(ctx, r, dir) // nothing to download: the file is the image
	}
	if s.opts.PullTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.PullTimeout)
		defer cancel()
	}
	src, err := s.resolve(ctx, r, opts.Auth)
	if err != nil {
		return nil, err
	}
	cfgHash, err := src.image.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("read config digest of %s: %w", ref, classify(err))
	}
	id := cfgHash.String()
	s.mu.Lock()
	_, have := s.byID[id]
	s.mu.Unlock()
	if !have {
		_, err, _ = s.builds.Do(id, func() (any, error) { return nil, s.build(ctx, src, id, opts) })
		if err != nil {
			return nil, err
		}
	}
	return s.name(id, r, repoName(r)+"@"+src.topHash.String())
}

// looksLikeFile says whether an image name is a path to a squashfs file (what
// `srun --container-image` accepts), which a registry name never is.
func looksLikeFile(ref string) bool {
	return strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "file://") ||
		strings.HasSuffix(ref, ".sqsh") || strings.HasSuffix(ref, ".squashfs")
}

// resolve finds the image on the configured mirrors, then on the host itself; the
// first that answers wins. A manifest list or OCI index resolves to this platform.
func (s *Store) resolve(ctx context.Context, r name.Reference, auth Auth) (*source, error) {
	host := hostConfig(s.opts.Hosts, r)
	candidates := make([]name.Reference, 0, len(host.Mirrors)+1)
	for _, m := range host.Mirrors {
		mr, err := onMirror(r, m, host.Insecure)
		if err != nil {
			return nil, errdefs.WithKind(err, errdefs.ErrInvalidArgument)
		}
		candidates = append(candidates, mr)
	}
	direct := r
	if host.Insecure {
		direct, _ = parseReference(r.String(), true)
	}
	candidates = append(candidates, direct)

	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth.authenticator()),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		remote.WithTransport(s.transport(host.Insecure)),
		remote.WithUserAgent(s.opts.UserAgent),
	}
	var errs []error
	for _, c := range candidates {
		desc, err := remote.Get(c, opts...)
		if err == nil {
			var img v1.Image
			img, err = desc.Image()
			if err == nil {
				return &source{ref: r, image: img, topHash: desc.Digest}, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.Context().RegistryStr(), err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("pull %s: %w", displayName(r), classify(errors.Join(errs...)))
}

func (s *Store) transport(insecure bool) http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = s.opts.MaxConcurrentDownloads
	if insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the operator asked for it with insecure = true
	}
	return t
}

// classify gives registry errors their kind: an unknown image is NotFound, refused
// credentials PermissionDenied, an unreachable registry Unavailable.
func classify(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusNotFound:
			return errdefs.WithKind(err, errdefs.ErrNotFound)
		case http.StatusUnauthorized, http.StatusForbidden:
			return errdefs.WithKind(err, errdefs.ErrPermissionDenied)
		}
		for _, d := range terr.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return errdefs.WithKind(err, errdefs.ErrNotFound)
			}
		}
	}
	var nerr net.Error
	if errors.As(err, &nerr) || errors.Is(err, context.DeadlineExceeded) {
		return errdefs.WithKind(err, errdefs.ErrUnavailable)
	}
	if strings.Contains(err.Error(), "no child with platform") {
		return errdefs.WithKind(err, errdefs.ErrNotFound)
	}
	return err
}

// progress counts a pull's bytes and layers and reports them periodically.
type progress struct {
	bytes, layers atomic.Int64
}

func (p *progress) report(ctx context.Context, image string, total int, opts PullOptions) (stop func()) {
	if opts.OnProgress == nil {
		return func() {}
	}
	interval := opts.ProgressInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				opts.OnProgress(Progress{Image: image, LayersDone: int(p.layers.Load()), Layers: total,
					Bytes: p.bytes.Load(), Elapsed: time.Since(start)})
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}
