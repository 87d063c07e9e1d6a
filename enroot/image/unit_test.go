package image

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

func TestParseReference(t *testing.T) {
	tests := []struct{ in, display, repo, host string }{
		{"busybox", "docker.io/library/busybox:latest", "docker.io/library/busybox", "docker.io"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "docker.io/library/busybox", "docker.io"},
		{"docker.io/library/busybox", "docker.io/library/busybox:latest", "docker.io/library/busybox", "docker.io"},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io/pause", "registry.k8s.io"},
		{"127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b", "127.0.0.1:5000"},
		{"busybox@sha256:" + hex64, "docker.io/library/busybox@sha256:" + hex64, "docker.io/library/busybox", "docker.io"},
		{"gcr.io/x/busybox:1.0@sha256:" + hex64, "gcr.io/x/busybox@sha256:" + hex64, "gcr.io/x/busybox", "gcr.io"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := parseReference(tt.in, false)
			require.NoError(t, err)
			assert.Equal(t, tt.display, displayName(r))
			assert.Equal(t, tt.repo, repoName(r))
			assert.Equal(t, tt.host, hostKey(r))
		})
	}
	for _, bad := range []string{"", "UPPER/case", "a@sha256:short", "a b"} {
		_, err := parseReference(bad, false)
		assert.ErrorIs(t, err, errdefs.ErrInvalidArgument, bad)
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestOnMirror(t *testing.T) {
	r, err := parseReference("registry.k8s.io/e2e-test-images/busybox:1.29-2", false)
	require.NoError(t, err)
	m, err := onMirror(r, "http://127.0.0.1:5000", false)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:5000/e2e-test-images/busybox:1.29-2", m.Name())
	assert.Equal(t, "http", m.Context().Scheme())

	d, err := parseReference("busybox@sha256:"+hex64, false)
	require.NoError(t, err)
	m, err = onMirror(d, "https://mirror.example:443", false)
	require.NoError(t, err)
	assert.Equal(t, "mirror.example:443/library/busybox@sha256:"+hex64, m.Name())
}

func TestHostConfig(t *testing.T) {
	hosts := map[string]Host{"docker.io": {Insecure: true}, "*": {Mirrors: []string{"http://m"}}}
	r, _ := parseReference("busybox", false)
	assert.True(t, hostConfig(hosts, r).Insecure)
	r, _ = parseReference("quay.io/x/y", false)
	assert.Equal(t, []string{"http://m"}, hostConfig(hosts, r).Mirrors)
}

func TestCleanName(t *testing.T) {
	ok := map[string]string{"./a/b": "a/b", "/etc/passwd": "etc/passwd", "a/./b/../c": "a/c", "./": "", "a..b": "a..b"}
	for in, want := range ok {
		got, err := cleanName(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"../x", "a/../../x", "/../etc/shadow", ".."} {
		_, err := cleanName(bad)
		assert.ErrorContains(t, err, "climbs out", bad)
	}
}

func TestEnrootFiles(t *testing.T) {
	files := enrootFiles(v1.Config{
		Env:        []string{"PATH=/usr/bin:/bin", "GREETING=it's me"},
		Entrypoint: []string{"/bin/app", "--flag=a b"},
		Cmd:        []string{"serve"},
		WorkingDir: "/srv/app",
		Volumes:    map[string]struct{}{"/data": {}, "/cache": {}},
		Labels:     map[string]string{"maintainer": "ops", "version": "1"},
	})
	assert.Equal(t, "PATH=/usr/bin:/bin\nGREETING=it's me\n", files["etc/environment"])
	assert.Equal(t, "${ENROOT_ROOTFS}/cache /cache none x-create=dir,bind,rw,nosuid,nodev\n"+
		"${ENROOT_ROOTFS}/data /data none x-create=dir,bind,rw,nosuid,nodev\n", files["etc/fstab"])
	// Byte for byte what Enroot 4.1.2's docker::configure writes (bash's @Q quoting).
	assert.Equal(t, `# maintainer ops
# version 1

mkdir -p "/srv/app" 2> /dev/null
cd "/srv/app" && unset OLDPWD || exit 1

if [ -s /etc/rc.local ]; then
    . /etc/rc.local
fi

if [ $# -gt 0 ]; then
    exec '/bin/app' '--flag=a b' "$@"
else
    exec '/bin/app' '--flag=a b' 'serve'
fi
`, files["etc/rc"])
	assert.Contains(t, files["etc/rc.local"], "sourced by /etc/rc")

	bare := enrootFiles(v1.Config{})
	assert.True(t, strings.HasPrefix(bare["etc/rc"], `mkdir -p "/" 2> /dev/null`+"\n"), "no labels, no blank line: %q", bare["etc/rc"])
	assert.Contains(t, bare["etc/rc"], "    exec  \"$@\"\nelse\n    exec  '/bin/sh'\n")
	assert.Empty(t, bare["etc/fstab"])
	odd := enrootFiles(v1.Config{Entrypoint: []string{"/x", "it's", "a\nb"}})
	assert.Contains(t, odd["etc/rc"], "    exec '/x' 'it'\\''s' $'a\\nb' \"$@\"\nelse\n    exec '/x' 'it'\\''s' $'a\\nb' \nfi\n")
}

func TestBashQuote(t *testing.T) {
	assert.Equal(t, `'it'\''s'`, bashQuote("it's"))
	assert.Equal(t, `'$HOME'`, bashQuote("$HOME"))
	assert.Equal(t, `$'tab\there\\'`, bashQuote("tab\there\\"))
}

func TestSquashArgs(t *testing.T) {
	assert.Equal(t, []string{"/s/rootfs", "/s/i.sqsh", "-noappend", "-no-progress", "-comp", "lzo", "-noD", "-exit-on-error"},
		squashArgs("/s/rootfs", "/s/i.sqsh", "-comp lzo -noD -exit-on-error"))
}
