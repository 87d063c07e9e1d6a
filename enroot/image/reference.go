package image

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// Host is the configuration of one registry host.
type Host struct {
	Mirrors  []string // http(s)://host[:port], tried in order before the host itself
	Insecure bool     // plain HTTP and unverified TLS allowed to the host and its mirrors
}

var (
	fullID   = regexp.MustCompile(`^(sha256:)?([0-9a-f]{64})$`)
	idPrefix = regexp.MustCompile(`^(sha256:)?([0-9a-f]{4,63})$`)
)

// parseReference parses an image name the way the kubelet sends it ("busybox",
// "busybox:1.36", "docker.io/library/busybox", "registry.k8s.io/pause:3.10",
// "name@sha256:…", "name:tag@sha256:…"); a name without tag means ":latest".
func parseReference(ref string, insecure bool) (name.Reference, error) {
	if ref == "" {
		return nil, fmt.Errorf("image name is empty: %w", errdefs.ErrInvalidArgument)
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image name %q is not a valid reference (NAME[:TAG][@sha256:DIGEST]): %w",
			ref, errdefs.WithKind(err, errdefs.ErrInvalidArgument))
	}
	return r, nil
}

// displayName is the normalised name shown in RepoTags and RepoDigests: Docker Hub
// images are "docker.io/library/x:tag", as containerd and CRI-O show them.
func displayName(r name.Reference) string {
	return strings.Replace(r.Name(), name.DefaultRegistry+"/", "docker.io/", 1)
}

// repoName is the normalised repository of r ("docker.io/library/busybox").
func repoName(r name.Reference) string {
	return strings.Replace(r.Context().Name(), name.DefaultRegistry+"/", "docker.io/", 1)
}

// hostKey is the name a registry host has in the configuration ("docker.io" for
// Docker Hub).
func hostKey(r name.Reference) string {
	h := r.Context().RegistryStr()
	if h == name.DefaultRegistry {
		return "docker.io"
	}
	return h
}

// hostConfig finds the configuration of r's host, or of "*".
func hostConfig(hosts map[string]Host, r name.Reference) Host {
	if h, ok := hosts[hostKey(r)]; ok {
		return h
	}
	return hosts["*"]
}

// onMirror returns r with its registry replaced by a mirror's; the repository path and
// tag or digest stay the same (registry.k8s.io/pause:3.10 is mirror/pause:3.10).
func onMirror(r name.Reference, mirror string, insecure bool) (name.Reference, error) {
	u, err := url.Parse(mirror)
	if err != nil {
		return nil, fmt.Errorf("mirror %q: %w", mirror, err)
	}
	var opts []name.Option
	if insecure || u.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("mirror %q: %w", mirror, err)
	}
	repo := reg.Repo(r.Context().RepositoryStr())
	if d, ok := r.(name.Digest); ok {
		return repo.Digest(d.DigestStr()), nil
	}
	return repo.Tag(r.Identifier()), nil
}
