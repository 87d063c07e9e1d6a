package server

import (
	"testing"

	"github.com/stretchr/testify/assert"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestStatusNamesTheImageThePodSpecNamed(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec *runtimeapi.ImageSpec
		want string
	}{
		{"kubelet: ID and the spec's name", &runtimeapi.ImageSpec{Image: "sha256:0123", UserSpecifiedImage: "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"},
			"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"},
		{"crictl: a name only", &runtimeapi.ImageSpec{Image: "busybox:1.29"}, "busybox:1.29"},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, statusImage(tc.spec).GetImage())
		})
	}
}
