package server

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// TestEnrootHandlerContainers checks what a container of the shipped enroot handler
// gets, as `enroot start` under pyxis gives a job step (docs/parity.md), and what it
// refuses.
func TestEnrootHandlerContainers(t *testing.T) {
	n := newFakeNode(t, nil)
	pod := podConfig("p")
	podID := n.runPod(t, pod, "enroot")

	t.Run("root is root inside, the handler's unprivileged user outside, alone in its user namespace", func(t *testing.T) {
		id, err := n.create(podID, pod, containerConfig("root"))
		require.NoError(t, err)
		spec := n.Engine.Config(id).Spec
		h := n.cfg.Runtimes["enroot"]
		assert.Equal(t, []specs.LinuxIDMapping{{ContainerID: 0, HostID: h.RemapRootUID, Size: 1}}, spec.Linux.UIDMappings)
		assert.Equal(t, []specs.LinuxIDMapping{{ContainerID: 0, HostID: h.RemapRootGID, Size: 1}}, spec.Linux.GIDMappings)
		assert.Equal(t, uint32(0), spec.Process.User.UID)
		assert.True(t, slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.UserNamespace }))
		assert.True(t, spec.Process.NoNewPrivileges)
		assert.True(t, spec.Root.Readonly, "ENROOT_ROOTFS_WRITABLE is off by default")
		assert.True(t, n.Engine.Config(id).EnrootFilter, "Enroot's seccomp filter")
	})
	for _, tc := range []struct {
		name, refused string
		edit          func(*runtimeapi.ContainerConfig)
	}{
		{"privileged", "never runs privileged containers", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}}
		}},
		{"a system account", "from uid 1000 (min_uid)", func(c *runtimeapi.ContainerConfig) {
			c.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 100}}}
		}},
		{"the node's Enroot configuration from the pod", "config.envs[0].key ENROOT_REMAP_ROOT", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "ENROOT_REMAP_ROOT", Value: []byte("y")}}
		}},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			cfg := containerConfig("c")
			tc.edit(cfg)
			_, err := n.create(podID, pod, cfg)
			require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
			assert.ErrorContains(t, err, tc.refused)
		})
	}
	t.Run("refuses a pod of its own user namespace", func(t *testing.T) {
		upod := podConfig("u")
		m := []*runtimeapi.IDMapping{{HostId: 1 << 20, Length: 65536}}
		upod.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
			UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}}}
		upodID := n.runPod(t, upod, "enroot")
		_, err := n.create(upodID, upod, containerConfig("c"))
		require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
		assert.ErrorContains(t, err, "hostUsers: false is not supported")
	})
}
