package server

import (
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/enroot/image"
)

// toCRIImage converts a store image. The image's user becomes uid when numeric and
// username otherwise ("1002", "www-data", "1003:1004" and "www-data:1004" forms).
func toCRIImage(img *image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.DiskSize()),
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
	}
	user, _, _ := strings.Cut(img.User, ":")
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		out.Uid = &runtimeapi.Int64Value{Value: uid}
	} else {
		out.Username = user
	}
	return out
}
