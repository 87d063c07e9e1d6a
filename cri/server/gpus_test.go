package server

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/cri/server/fake"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/ledger"
	"github.com/enroot-cri/enroot-cri/mig"
)

// gpuNode is a fake node with two GPUs: GPU 0 in MIG mode with a 1g.10gb and a
// 3g.40gb slice, GPU 1 whole. Its device nodes are links to /dev/null, which a test
// without root can stat as character devices.
func gpuNode(t *testing.T) *fakeNode {
	t.Helper()
	inv := mig.Inventory{GPUs: []mig.GPU{
		{Index: 0, UUID: "GPU-aaaa", Minor: 0, MIGCurrent: true, Slices: []mig.Slice{
			{UUID: "MIG-0001", Profile: "1g.10gb", GPU: 0, GI: 7, CI: 0},
			{UUID: "MIG-0002", Profile: "3g.40gb", GPU: 0, GI: 2, CI: 0},
		}},
		{Index: 1, UUID: "GPU-bbbb", Minor: 1},
	}}
	dev := t.TempDir()
	for _, name := range []string{"nvidia0", "nvidia1", "nvidiactl", "nvidia-caps/nvidia-cap66", "nvidia-caps/nvidia-cap67", "nvidia-caps/nvidia-cap21", "nvidia-caps/nvidia-cap22"} {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dev, name)), 0o755))
		require.NoError(t, os.Symlink("/dev/null", filepath.Join(dev, name)))
	}
	writeFile(t, filepath.Join(dev, "mig-minors"), "gpu0/gi7/access 66\ngpu0/gi7/ci0/access 67\ngpu0/gi2/access 21\ngpu0/gi2/ci0/access 22\n")
	return newFakeNode(t, func(c *config.Config, o *Options) {
		c.GPUs.DevRoot, c.GPUs.MigMinors = dev, filepath.Join(dev, "mig-minors")
		o.GPUs = &inv
	})
}

// gpuContainer asks for GPUs without driver files: this node has no NVIDIA hook and no
// CDI specs.
func gpuContainer(name string, annotations map[string]string, cdi ...string) *runtimeapi.ContainerConfig {
	cfg := containerConfig(name)
	cfg.Annotations = map[string]string{AnnotationGPUDriver: "none"}
	for k, v := range annotations {
		cfg.Annotations[k] = v
	}
	for _, d := range cdi {
		cfg.CDIDevices = append(cfg.CDIDevices, &runtimeapi.CDIDevice{Name: d})
	}
	return cfg
}

func TestGPURequests(t *testing.T) {
	n := gpuNode(t)
	pod := podConfig("p")
	podID := n.runPod(t, pod, "")
	holderOf := func(uuid string) string {
		claims, err := n.ledger.Read()
		require.NoError(t, err)
		return claims.Devices[uuid].ID
	}
	envOf := func(id string) []string { return n.Engine.Config(id).Spec.Process.Env }
	devicesOf := func(id string) []string {
		var out []string
		for _, d := range n.Engine.Config(id).Spec.Linux.Devices {
			out = append(out, d.Path)
		}
		return out
	}

	whole, err := n.create(podID, pod, gpuContainer("whole", nil, "nvidia.com/gpu=1"))
	require.NoError(t, err)
	assert.Equal(t, whole, holderOf("GPU-bbbb"))
	assert.Contains(t, envOf(whole), "NVIDIA_VISIBLE_DEVICES=GPU-bbbb")
	assert.Subset(t, devicesOf(whole), []string{"/dev/nvidia1", "/dev/nvidiactl"})
	assert.NotContains(t, devicesOf(whole), "/dev/nvidia0")

	_, err = n.create(podID, pod, gpuContainer("again", nil, "nvidia.com/gpu=GPU-bbbb"))
	require.ErrorIs(t, err, errdefs.ErrFailedPrecondition, "a GPU another container holds")
	assert.ErrorContains(t, err, "default/p/whole")

	slice, err := n.create(podID, pod, gpuContainer("slice", map[string]string{AnnotationMIGProfile: "3g.40gb"}))
	require.NoError(t, err)
	assert.Equal(t, slice, holderOf("MIG-0002"))
	assert.Contains(t, envOf(slice), "NVIDIA_VISIBLE_DEVICES=MIG-0002")
	assert.Subset(t, devicesOf(slice), []string{"/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap21", "/dev/nvidia-caps/nvidia-cap22"})

	_, err = n.create(podID, pod, gpuContainer("none-left", map[string]string{AnnotationMIGProfile: "3g.40gb"}))
	require.ErrorIs(t, err, errdefs.ErrFailedPrecondition, "no 3g.40gb is free")
	_, err = n.create(podID, pod, gpuContainer("unknown", map[string]string{AnnotationMIGProfile: "7g.80gb"}))
	require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
	assert.ErrorContains(t, err, "1g.10gb")
	_, err = n.create(podID, pod, gpuContainer("count", map[string]string{AnnotationMIGProfile: "1g.10gb", AnnotationGPUCount: "0"}))
	require.ErrorIs(t, err, errdefs.ErrInvalidArgument)
	assert.ErrorContains(t, err, AnnotationGPUCount)

	env := containerConfig("env")
	env.Envs = []*runtimeapi.KeyValue{{Key: "NVIDIA_VISIBLE_DEVICES", Value: []byte("all")}}
	plain, err := n.create(podID, pod, env)
	require.NoError(t, err, "NVIDIA_VISIBLE_DEVICES asks for nothing unless gpus.accept_env_requests is on")
	assert.NotContains(t, devicesOf(plain), "/dev/nvidiactl")

	// A Slurm job's claim is honoured: the slice is not handed out.
	require.NoError(t, n.ledger.Claim([]string{"MIG-0001"}, ledger.Holder{Kind: ledger.HolderSlurm, ID: "42", Since: time.Now()}))
	_, err = n.create(podID, pod, gpuContainer("job-held", nil, "nvidia.com/gpu=MIG-0001"))
	require.ErrorIs(t, err, errdefs.ErrFailedPrecondition)
	assert.ErrorContains(t, err, "42")

	// Removing a container gives its GPU back.
	_, err = n.srv.RemoveContainer(t.Context(), &runtimeapi.RemoveContainerRequest{ContainerId: whole})
	require.NoError(t, err)
	assert.Empty(t, holderOf("GPU-bbbb"))
}

// TestAGPUCreateThatFailsGivesTheGPUBack checks that a create that claimed a GPU and
// then failed (no driver files for it) leaves the GPU free.
func TestAGPUCreateThatFailsGivesTheGPUBack(t *testing.T) {
	n := gpuNode(t)
	pod := podConfig("p")
	podID := n.runPod(t, pod, "")
	cfg := gpuContainer("c", nil, "nvidia.com/gpu=1")
	delete(cfg.Annotations, AnnotationGPUDriver)
	_, err := n.create(podID, pod, cfg)
	require.ErrorIs(t, err, errdefs.ErrFailedPrecondition)
	assert.ErrorContains(t, err, "no Enroot NVIDIA hook")
	n.assertNothingHeld(t)

	// Nor does a failure after the claim: the cgroup cannot be made.
	n.Faults.Fail("Cgroups.Create", fake.ErrInjected)
	_, err = n.create(podID, pod, gpuContainer("c", nil, "nvidia.com/gpu=1"))
	require.Error(t, err)
	n.assertNothingHeld(t)
	n.Faults.Clear()
	id, err := n.create(podID, pod, gpuContainer("c", nil, "nvidia.com/gpu=1"))
	require.NoError(t, err)
	claims, err := n.ledger.Read()
	require.NoError(t, err)
	assert.Equal(t, id, claims.Devices["GPU-bbbb"].ID)
	assert.True(t, slices.Contains(n.Engine.IDs(), id))
}
