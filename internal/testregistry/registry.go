package testregistry

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Auth selects how the registry authenticates clients.
type Auth int

// The authentication modes.
const (
	NoAuth    Auth = iota // anyone may pull
	BasicAuth             // HTTP basic on every request
	TokenAuth             // Docker token flow: 401 with a Bearer realm, token for basic credentials
)

// Options configure a Registry.
type Options struct {
	Auth     Auth
	User     string
	Password string
	// Addr to listen on; empty means 127.0.0.1 on a free port.
	Addr string
	// TLS serves HTTPS with a certificate no client trusts.
	TLS bool
	// BlobStall pauses every blob download this long after its first StallAfter
	// bytes, to make pulls slow enough to interrupt.
	BlobStall time.Duration
	// Rate, when set, bounds the bytes per second of all blob downloads together, as a
	// link of that speed would (125e6 for 1 Gbit/s).
	Rate float64
}

// Registry is a running registry.
type Registry struct {
	Host string // host:port
	srv  *httptest.Server
	opts Options

	link *pacer // nil: blobs go as fast as loopback

	mu        sync.Mutex
	blobGets  map[string]int
	manifests int
}

const testToken = "enroot-cri-test-token"

// Start starts a registry; Close stops it.
func Start(opts Options) (*Registry, error) {
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	r := &Registry{opts: opts, blobGets: map[string]int{}}
	if opts.Rate > 0 {
		r.link = &pacer{rate: opts.Rate}
	}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.serve(inner, w, req)
	}))
	srv.Listener.Close()
	srv.Listener = l
	if opts.TLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	r.srv = srv
	r.Host = l.Addr().String()
	return r, nil
}

// Close stops the registry.
func (r *Registry) Close() { r.srv.Close() }

func (r *Registry) serve(inner http.Handler, w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/token" {
		r.serveToken(w, req)
		return
	}
	if !r.authorized(req) {
		switch r.opts.Auth {
		case BasicAuth:
			w.Header().Set("WWW-Authenticate", `Basic realm="enroot-cri-test"`)
		case TokenAuth:
			w.Header().Set("WWW-Authenticate",
				fmt.Sprintf(`Bearer realm="http://%s/token",service="enroot-cri-test"`, r.Host))
		}
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if req.Method == http.MethodGet {
		r.mu.Lock()
		i := strings.Index(req.URL.Path, "/blobs/")
		if i >= 0 {
			r.blobGets[req.URL.Path[i+len("/blobs/"):]]++
		}
		if strings.Contains(req.URL.Path, "/manifests/") {
			r.manifests++
		}
		r.mu.Unlock()
		if i >= 0 && r.opts.BlobStall > 0 {
			w = &stallingWriter{ResponseWriter: w, stall: r.opts.BlobStall, done: req.Context().Done()}
		}
		if i >= 0 && r.link != nil {
			w = &pacedWriter{ResponseWriter: w, link: r.link}
		}
	}
	inner.ServeHTTP(w, req)
}

func (r *Registry) authorized(req *http.Request) bool {
	switch r.opts.Auth {
	case BasicAuth:
		u, p, ok := req.BasicAuth()
		return ok && u == r.opts.User && p == r.opts.Password
	case TokenAuth:
		return req.Header.Get("Authorization") == "Bearer "+testToken
	default:
		return true
	}
}

func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	u, p, ok := req.BasicAuth()
	if r.opts.Auth != TokenAuth || !ok || u != r.opts.User || p != r.opts.Password {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": testToken})
}

// BlobGets is how many times the blob with digest was downloaded.
func (r *Registry) BlobGets(digest string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[digest]
}

// Push stores img under repoTag ("library/busybox:1.36" or "x@sha256:…" forms are
// relative to this registry) and returns the full reference.
func (r *Registry) Push(repoTag string, img v1.Image) (name.Reference, error) {
	ref, err := name.ParseReference(r.Host + "/" + repoTag)
	if err != nil {
		return nil, err
	}
	return ref, remote.Write(ref, img, r.remoteOptions()...)
}

// PushIndex stores an image index (manifest list) under repoTag.
func (r *Registry) PushIndex(repoTag string, idx v1.ImageIndex) (name.Reference, error) {
	ref, err := name.ParseReference(r.Host + "/" + repoTag)
	if err != nil {
		return nil, err
	}
	return ref, remote.WriteIndex(ref, idx, r.remoteOptions()...)
}

func (r *Registry) remoteOptions() []remote.Option {
	opts := []remote.Option{r.remoteAuth()}
	if r.opts.TLS {
		opts = append(opts, remote.WithTransport(r.srv.Client().Transport))
	}
	return opts
}

func (r *Registry) remoteAuth() remote.Option {
	if r.opts.Auth == NoAuth {
		return remote.WithAuth(authn.Anonymous)
	}
	return remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: r.opts.User, Password: r.opts.Password}))
}

// StallAfter is how many bytes of a blob are sent before a BlobStall pause.
const StallAfter = 4096

type stallingWriter struct {
	http.ResponseWriter
	stall   time.Duration
	done    <-chan struct{}
	written int
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	if w.written < StallAfter && w.written+len(p) >= StallAfter {
		n, err := w.ResponseWriter.Write(p[:StallAfter-w.written])
		w.written += n
		if err != nil {
			return n, err
		}
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		select {
		case <-time.After(w.stall):
		case <-w.done:
			return n, http.ErrAbortHandler
		}
		m, err := w.ResponseWriter.Write(p[n:])
		w.written += m
		return n + m, err
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += n
	return n, err
}

// pacer hands out a link's bandwidth: each write reserves the time its bytes take at
// the rate, after the writes before it, and waits for the end of its slot.
type pacer struct {
	rate float64 // bytes per second
	mu   sync.Mutex
	next time.Time
}

func (p *pacer) wait(n int) {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	d := p.next.Sub(now)
	p.mu.Unlock()
	time.Sleep(d)
}

// pacedWriter sends a blob through the registry's paced link, 64 KiB at a time.
type pacedWriter struct {
	http.ResponseWriter
	link *pacer
}

func (w *pacedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), 64<<10)]
		w.link.wait(len(chunk))
		n, err := w.ResponseWriter.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}
