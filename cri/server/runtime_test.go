package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/config"
)

func TestVersion(t *testing.T) {
	h := newHarness(t, nil)
	h.ready(t, nil)
	v, err := h.runtime.Version(bg, &runtimeapi.VersionRequest{})
	require.NoError(t, err)
	assert.Equal(t, "enroot-cri", v.RuntimeName)
	assert.Equal(t, "v1", v.RuntimeApiVersion)
	assert.NotEmpty(t, v.RuntimeVersion)
}

func TestStatusReflectsCNIConfiguration(t *testing.T) {
	h := newHarness(t, nil)
	h.ready(t, nil)
	cond := func() map[string]*runtimeapi.RuntimeCondition {
		st, err := h.runtime.Status(bg, &runtimeapi.StatusRequest{Verbose: true})
		require.NoError(t, err)
		assert.Contains(t, st.Info["config"], h.cfg.Root)
		out := map[string]*runtimeapi.RuntimeCondition{}
		for _, c := range st.Status.Conditions {
			out[c.Type] = c
		}
		return out
	}
	c := cond()
	assert.True(t, c[runtimeapi.RuntimeReady].Status)
	assert.False(t, c[runtimeapi.NetworkReady].Status)
	assert.Equal(t, "NetworkPluginNotReady", c[runtimeapi.NetworkReady].Reason)

	require.NoError(t, os.MkdirAll(h.cfg.CNI.ConfDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(h.cfg.CNI.ConfDir, "10-bridge.conflist"), []byte(`{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"loopback"}]}`), 0o644))
	assert.True(t, cond()[runtimeapi.NetworkReady].Status)
}

func TestRuntimeConfigReportsCgroupDriver(t *testing.T) {
	for driver, want := range map[string]runtimeapi.CgroupDriver{
		"cgroupfs": runtimeapi.CgroupDriver_CGROUPFS, "systemd": runtimeapi.CgroupDriver_SYSTEMD,
	} {
		h := newHarness(t, func(c *config.Config) { c.Cgroups.Driver = driver })
		h.ready(t, nil)
		rc, err := h.runtime.RuntimeConfig(bg, &runtimeapi.RuntimeConfigRequest{})
		require.NoError(t, err)
		assert.Equal(t, want, rc.Linux.CgroupDriver)
	}
}

func TestCheckpointIsNotImplemented(t *testing.T) {
	h := newHarness(t, nil)
	h.ready(t, nil)
	_, err := h.runtime.CheckpointContainer(bg, &runtimeapi.CheckpointContainerRequest{})
	requireCode(t, codes.Unimplemented, err)
}
