package cgroups

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

func TestContainerPath(t *testing.T) {
	tests := []struct {
		driver       Driver
		parent, want string
	}{
		{Cgroupfs, "/kubepods/burstable/pod123", "/kubepods/burstable/pod123/abc"},
		{Cgroupfs, "", "/enroot-cri/abc"},
		{Systemd, "kubepods-burstable-pod123.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice/enroot-cri-abc.scope"},
		{Systemd, "kubepods.slice", "/kubepods.slice/enroot-cri-abc.scope"},
		{Systemd, "", "/enroot-cri/abc"},
	}
	for _, tt := range tests {
		got, err := ContainerPath(tt.driver, tt.parent, "abc")
		require.NoError(t, err, tt.parent)
		assert.Equal(t, tt.want, got)
	}
	for _, bad := range []struct {
		driver Driver
		parent string
	}{{Cgroupfs, "relative/path"}, {Systemd, "/kubepods/pod1"}, {Systemd, "a--b.slice"}} {
		_, err := ContainerPath(bad.driver, bad.parent, "abc")
		assert.ErrorIs(t, err, errdefs.ErrInvalidArgument, bad.parent)
	}
}
