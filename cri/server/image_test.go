package server

import (
	"encoding/json"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/enroot/image"
)

func spec(ref string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: ref} }

func TestImageLifecycle(t *testing.T) {
	h := newHarness(t, nil)
	reg := h.startRegistry(t)
	h.ready(t, map[string]image.Host{"registry.k8s.io": {Mirrors: []string{"http://" + reg.Host}}})
	h.pushImage(t, "e2e-test-images/busybox:1.29-2", v1.Config{User: "www-data:1004"}, "a")
	h.pushImage(t, "pause:3.10", v1.Config{User: "65535"}, "b")

	pulled, err := h.images.PullImage(bg, &runtimeapi.PullImageRequest{Image: spec("registry.k8s.io/e2e-test-images/busybox:1.29-2")})
	require.NoError(t, err)
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, pulled.ImageRef)
	_, err = h.images.PullImage(bg, &runtimeapi.PullImageRequest{Image: spec("registry.k8s.io/pause:3.10")})
	require.NoError(t, err)

	list, err := h.images.ListImages(bg, &runtimeapi.ListImagesRequest{})
	require.NoError(t, err)
	assert.Len(t, list.Images, 2)

	filtered, err := h.images.ListImages(bg, &runtimeapi.ListImagesRequest{
		Filter: &runtimeapi.ImageFilter{Image: spec("registry.k8s.io/pause:3.10")}})
	require.NoError(t, err)
	require.Len(t, filtered.Images, 1)
	assert.Equal(t, []string{"registry.k8s.io/pause:3.10"}, filtered.Images[0].RepoTags)
	assert.Equal(t, int64(65535), filtered.Images[0].Uid.GetValue())

	st, err := h.images.ImageStatus(bg, &runtimeapi.ImageStatusRequest{Image: spec(pulled.ImageRef), Verbose: true})
	require.NoError(t, err)
	assert.Equal(t, pulled.ImageRef, st.Image.Id)
	assert.Equal(t, "www-data", st.Image.Username)
	assert.Nil(t, st.Image.Uid)
	assert.NotZero(t, st.Image.Size)
	var info map[string]any
	require.NoError(t, json.Unmarshal([]byte(st.Info["info"]), &info))
	assert.Regexp(t, `/images/[0-9a-f]{64}\.sqsh$`, info["squashfs"])

	fs, err := h.images.ImageFsInfo(bg, &runtimeapi.ImageFsInfoRequest{})
	require.NoError(t, err)
	require.Len(t, fs.ImageFilesystems, 1)
	assert.Equal(t, h.cfg.Root, fs.ImageFilesystems[0].FsId.Mountpoint)
	assert.Greater(t, fs.ImageFilesystems[0].UsedBytes.Value, st.Image.Size)
	assert.Greater(t, fs.ImageFilesystems[0].InodesUsed.Value, uint64(4))

	_, err = h.images.RemoveImage(bg, &runtimeapi.RemoveImageRequest{Image: spec(pulled.ImageRef)})
	require.NoError(t, err)
	st, err = h.images.ImageStatus(bg, &runtimeapi.ImageStatusRequest{Image: spec(pulled.ImageRef)})
	require.NoError(t, err)
	assert.Nil(t, st.Image, "an absent image is a nil image, not an error")
	_, err = h.images.RemoveImage(bg, &runtimeapi.RemoveImageRequest{Image: spec(pulled.ImageRef)})
	assert.NoError(t, err, "removing an absent image succeeds")
	filtered, err = h.images.ListImages(bg, &runtimeapi.ListImagesRequest{
		Filter: &runtimeapi.ImageFilter{Image: spec(pulled.ImageRef)}})
	require.NoError(t, err)
	assert.Empty(t, filtered.Images)
}

func TestImageRequestsAreValidated(t *testing.T) {
	h := newHarness(t, nil)
	h.startRegistry(t)
	h.ready(t, nil)
	_, err := h.images.PullImage(bg, &runtimeapi.PullImageRequest{})
	requireCode(t, codes.InvalidArgument, err)
	assert.ErrorContains(t, err, "image.image is empty")
	_, err = h.images.PullImage(bg, &runtimeapi.PullImageRequest{Image: spec("Not A Name")})
	requireCode(t, codes.InvalidArgument, err)
	_, err = h.images.ImageStatus(bg, &runtimeapi.ImageStatusRequest{})
	requireCode(t, codes.InvalidArgument, err)
	_, err = h.images.RemoveImage(bg, &runtimeapi.RemoveImageRequest{Image: spec("")})
	requireCode(t, codes.InvalidArgument, err)
	_, err = h.images.PullImage(bg, &runtimeapi.PullImageRequest{Image: spec(h.reg.Host + "/absent/image:1")})
	requireCode(t, codes.NotFound, err)
}
