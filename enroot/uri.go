package enroot

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// DockerHub is the registry host Enroot names Docker Hub by.
const DockerHub = "registry-1.docker.io"

// URI is an image URI of `enroot import`'s docker scheme:
// docker://[USER@][REGISTRY#]IMAGE[:TAG|@DIGEST], or the Docker form
// docker://[USER@]REGISTRY/IMAGE[:TAG|@DIGEST] where REGISTRY has a dot or a port.
type URI struct {
	User     string // the login of the credentials to use; "" when not given
	Registry string // host[:port]; DockerHub when not given
	Image    string // repository path, "library/" added for Docker Hub's official images
	Tag      string // "" when not given (Enroot then asks for "latest")
	Digest   string // "sha256:…" when given; the tag is then ignored, as Enroot ignores it
}

// The parts of the grammar, as Enroot's docker::_parse_uri spells them.
const (
	uriUser   = `[[:alnum:]_.!~*'()%;:&=+$,-@]+`
	uriImage  = `[[:lower:][:digit:]/._-]+`
	uriTag    = `[[:alnum:]._:-]+`
	uriDigest = `sha256:[[:alnum:]]+`
)

// uriForm is one of Enroot's URI forms: the pattern and which groups hold what (0: none).
type uriForm struct {
	re                                 *regexp.Regexp
	user, registry, image, tag, digest int
	hub                                bool // no registry: Docker Hub's library/IMAGE
	dockerSyntax                       bool // REGISTRY/IMAGE, where REGISTRY may be a Hub namespace
}

// uriForms are tried in Enroot's order with POSIX leftmost-longest matching, as bash's
// =~ matches.
var uriForms = func() []uriForm {
	p := func(s string) *regexp.Regexp {
		return regexp.MustCompilePOSIX("^docker://((" + uriUser + ")@)?" + s + "$")
	}
	return []uriForm{
		{re: p(`([^/#]+)/(` + uriImage + `):(` + uriTag + `)@(` + uriDigest + `)`), user: 2, registry: 3, image: 4, tag: 5, digest: 6, dockerSyntax: true},
		{re: p(`([^/#]+)/(` + uriImage + `)@(` + uriDigest + `)`), user: 2, registry: 3, image: 4, digest: 5, dockerSyntax: true},
		{re: p(`([^/#]+)/(` + uriImage + `)(:(` + uriTag + `))?`), user: 2, registry: 3, image: 4, tag: 6, dockerSyntax: true},
		{re: p(`([^/@#:]+):(` + uriTag + `)@(` + uriDigest + `)`), user: 2, image: 3, tag: 4, digest: 5, hub: true},
		{re: p(`([^/@#:]+)@(` + uriDigest + `)`), user: 2, image: 3, digest: 4, hub: true},
		{re: p(`([^/@#:]+)(:(` + uriTag + `))?`), user: 2, image: 3, tag: 5, hub: true},
		{re: p(`([^#/@]+)#(` + uriImage + `):(` + uriTag + `)@(` + uriDigest + `)`), user: 2, registry: 3, image: 4, tag: 5, digest: 6},
		{re: p(`([^#/@]+)#(` + uriImage + `)@(` + uriDigest + `)`), user: 2, registry: 3, image: 4, digest: 5},
		{re: p(`([^#/@]+)#(` + uriImage + `)(:(` + uriTag + `))?`), user: 2, registry: 3, image: 4, tag: 6},
	}
}()

// ParseURI parses an Enroot docker:// URI the way `enroot import` does. Other schemes
// (dockerd://, podman://) name a local engine's images, which a node daemon cannot
// reach on a user's behalf; they and malformed URIs are InvalidArgument.
func ParseURI(s string) (URI, error) {
	if !strings.HasPrefix(s, "docker://") {
		scheme, _, ok := strings.Cut(s, "://")
		if !ok {
			return URI{}, fmt.Errorf("image URI %q has no scheme; allowed: docker://[USER@][REGISTRY#]IMAGE[:TAG]: %w", s, errdefs.ErrInvalidArgument)
		}
		return URI{}, fmt.Errorf("image URI %q: scheme %s:// is not served by enroot-cri; allowed: docker://[USER@][REGISTRY#]IMAGE[:TAG]: %w",
			s, scheme, errdefs.ErrInvalidArgument)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		// POSIX matching lets ^ and $ match at newlines; nothing valid has a space.
		return URI{}, fmt.Errorf("image URI %q has spaces or control characters: %w", s, errdefs.ErrInvalidArgument)
	}
	for _, f := range uriForms {
		m := f.re.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		group := func(i int) string {
			if i == 0 {
				return ""
			}
			return m[i]
		}
		u := URI{User: group(f.user), Registry: group(f.registry), Image: group(f.image), Tag: group(f.tag), Digest: group(f.digest)}
		if u.Digest != "" {
			u.Tag = ""
		}
		switch {
		case f.hub:
			u.Registry, u.Image = DockerHub, "library/"+u.Image
		case f.dockerSyntax && !strings.ContainsAny(u.Registry, ".:"):
			// Not a registry host but a Docker Hub namespace ("nvidia/cuda").
			u.Registry, u.Image = DockerHub, u.Registry+"/"+u.Image
		}
		return u, nil
	}
	return URI{}, fmt.Errorf("image URI %q is not valid; allowed: docker://[USER@][REGISTRY#]IMAGE[:TAG|@sha256:DIGEST]: %w", s, errdefs.ErrInvalidArgument)
}

// Reference is the image name the URI points at in the CRI's syntax
// ("docker.io/library/ubuntu:latest", "nvcr.io/nvidia/pytorch@sha256:…").
func (u URI) Reference() string {
	host := u.Registry
	if host == DockerHub {
		host = "docker.io"
	}
	if u.Digest != "" {
		return host + "/" + u.Image + "@" + u.Digest
	}
	tag := u.Tag
	if tag == "" {
		tag = "latest"
	}
	return host + "/" + u.Image + ":" + tag
}
