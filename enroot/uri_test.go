package enroot

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// The cases are Enroot's own URI forms (docker::_parse_uri), with what `enroot import`
// would fetch.
func TestParseURI(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		uri  string
		want URI
		ref  string
	}{
		{"docker://ubuntu", URI{Registry: DockerHub, Image: "library/ubuntu"}, "docker.io/library/ubuntu:latest"},
		{"docker://ubuntu:24.04", URI{Registry: DockerHub, Image: "library/ubuntu", Tag: "24.04"}, "docker.io/library/ubuntu:24.04"},
		{"docker://ubuntu@" + d, URI{Registry: DockerHub, Image: "library/ubuntu", Digest: d}, "docker.io/library/ubuntu@" + d},
		{"docker://ubuntu:24.04@" + d, URI{Registry: DockerHub, Image: "library/ubuntu", Digest: d}, "docker.io/library/ubuntu@" + d},
		{"docker://nvidia/cuda:12.4", URI{Registry: DockerHub, Image: "nvidia/cuda", Tag: "12.4"}, "docker.io/nvidia/cuda:12.4"},
		{"docker://nvcr.io#nvidia/pytorch:24.05-py3", URI{Registry: "nvcr.io", Image: "nvidia/pytorch", Tag: "24.05-py3"}, "nvcr.io/nvidia/pytorch:24.05-py3"},
		{"docker://$oauthtoken@nvcr.io#nvidia/pytorch:24.05-py3", URI{User: "$oauthtoken", Registry: "nvcr.io", Image: "nvidia/pytorch", Tag: "24.05-py3"}, "nvcr.io/nvidia/pytorch:24.05-py3"},
		{"docker://nvcr.io/nvidia/pytorch:24.05-py3", URI{Registry: "nvcr.io", Image: "nvidia/pytorch", Tag: "24.05-py3"}, "nvcr.io/nvidia/pytorch:24.05-py3"},
		{"docker://127.0.0.1:5000#img", URI{Registry: "127.0.0.1:5000", Image: "img"}, "127.0.0.1:5000/img:latest"},
		{"docker://alice@127.0.0.1:5000#team/img:v1", URI{User: "alice", Registry: "127.0.0.1:5000", Image: "team/img", Tag: "v1"}, "127.0.0.1:5000/team/img:v1"},
		{"docker://127.0.0.1:5000/img:v1", URI{Registry: "127.0.0.1:5000", Image: "img", Tag: "v1"}, "127.0.0.1:5000/img:v1"},
		{"docker://reg.example#img@" + d, URI{Registry: "reg.example", Image: "img", Digest: d}, "reg.example/img@" + d},
	} {
		got, err := ParseURI(tc.uri)
		require.NoError(t, err, tc.uri)
		assert.Equal(t, tc.want, got, tc.uri)
		assert.Equal(t, tc.ref, got.Reference(), tc.uri)
	}
	for _, bad := range []string{"", "ubuntu", "/shared/x.sqsh", "dockerd://ubuntu", "podman://x", "docker://", "docker://UPPER#Img", "docker://a#b c", "docker://reg#img:tag\n"} {
		_, err := ParseURI(bad)
		assert.ErrorIs(t, err, errdefs.ErrInvalidArgument, "%q", bad)
	}
}

func TestLookupCredential(t *testing.T) {
	file := filepath.Join(t.TempDir(), ".credentials")
	require.NoError(t, os.WriteFile(file, []byte(`# NGC
machine nvcr.io login $oauthtoken password $ENROOT_CRI_TEST_KEY
machine 127.0.0.1 login alice password s3cret
machine 127.0.0.1 login bob password hunter2
machine other.example login carol
`), 0o600))
	t.Setenv("ENROOT_CRI_TEST_KEY", "from-env")
	ctx := context.Background()
	for _, tc := range []struct {
		registry, user string
		want           Credential
		found          bool
	}{
		{"nvcr.io", "", Credential{"$oauthtoken", "from-env"}, true},
		{"127.0.0.1:5000", "", Credential{"alice", "s3cret"}, true},
		{"127.0.0.1:5000", "bob", Credential{"bob", "hunter2"}, true},
		{"127.0.0.1:5000", "mallory", Credential{}, false},
		{"other.example", "", Credential{Login: "carol"}, true},
		{"docker.example", "", Credential{}, false},
	} {
		c, found, err := LookupCredential(ctx, file, tc.registry, tc.user)
		require.NoError(t, err)
		assert.Equal(t, tc.found, found, tc)
		assert.Equal(t, tc.want, c, tc)
	}
	_, found, err := LookupCredential(ctx, filepath.Join(t.TempDir(), "none"), "nvcr.io", "")
	require.NoError(t, err)
	assert.False(t, found)

	assert.Equal(t, "/cfg/enroot", ConfigPath(Settings{}, func(n string) (string, bool) { return "/cfg", n == "XDG_CONFIG_HOME" }))
	assert.Equal(t, "/home/u/.config/enroot", ConfigPath(Settings{}, func(n string) (string, bool) { return "/home/u", n == "HOME" }))
	assert.Equal(t, "/etc/x", ConfigPath(Settings{"ENROOT_CONFIG_PATH": "/etc/x"}, func(string) (string, bool) { return "", false }))
}
