package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupFile reads one file of a container's cgroup v1 directory.
func (e *podEnv) cgroupFile(t *testing.T, id, controller, file string) string {
	t.Helper()
	var info struct {
		CgroupPath string `json:"cgroupPath"`
	}
	resp, err := e.runtime.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	require.NoError(t, err)
	require.NoError(t, jsonUnmarshal(resp.Info["info"], &info))
	data, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, info.CgroupPath, file))
	require.NoError(t, err)
	return strings.TrimSpace(string(data))
}

func needCgroupV1(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Skip("reads cgroup v1 files; cgroup v2 is tested by make test-cgroupv2")
	}
}

// A container gets what slurmd's task/cgroup gives a step under the same cgroup.conf.
func TestSlurmCgroupConfConfinesContainers(t *testing.T) {
	needCgroupV1(t)
	e := newPodEnvSlurm(t, "", `# the node's Slurm policy
ConstrainCores=yes
ConstrainRAMSpace=yes
AllowedRAMSpace=120
ConstrainSwapSpace=yes
AllowedSwapSpace=10
MemorySwappiness=7
`)
	ctx := context.Background()
	cfg := e.podConfig("slurm", nil)
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "step"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"sleep", "1000"},
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: 100 << 20, CpuQuota: 100000, CpuPeriod: 100000}},
	})
	_, err := e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)

	assert.Equal(t, itoa(120<<20), e.cgroupFile(t, id, "memory", "memory.limit_in_bytes"), "AllowedRAMSpace=120")
	assert.Equal(t, itoa(100<<20), e.cgroupFile(t, id, "memory", "memory.soft_limit_in_bytes"), "the soft limit is the allocation")
	assert.Equal(t, itoa(130<<20), e.cgroupFile(t, id, "memory", "memory.memsw.limit_in_bytes"), "plus AllowedSwapSpace=10")
	assert.Equal(t, "7", e.cgroupFile(t, id, "memory", "memory.swappiness"))
	assert.Regexp(t, `^\d+$`, e.cgroupFile(t, id, "cpuset", "cpuset.cpus"), "one CPU for a quota of one")
	devices := e.cgroupFile(t, id, "devices", "devices.list")
	assert.NotContains(t, devices, "a *:* rwm", "devices are deny-by-default")
	assert.Contains(t, devices, "c 1:3 rwm")

	_, err = e.runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 200 << 20, CpuQuota: 200000, CpuPeriod: 100000}})
	require.NoError(t, err)
	assert.Equal(t, itoa(240<<20), e.cgroupFile(t, id, "memory", "memory.limit_in_bytes"), "an update goes through the policy too")
	assert.Equal(t, "0-1", e.cgroupFile(t, id, "cpuset", "cpuset.cpus"))
}

// An unlisted device cannot be opened even where the container can make its node.
func TestDevicesAreDenyByDefault(t *testing.T) {
	needCgroupV1(t)
	e := newPodEnv(t)
	cfg := e.podConfig("devices", nil)
	pod := e.runPod(t, cfg)
	out, code := e.runWith(t, pod, cfg, "c", nil, `mknod /tmp/full c 1 7 && mknod /tmp/kmsg c 1 11 || exit 3
[ "$(head -c1 /tmp/full | wc -c)" = 1 ] && echo full-allowed
head -c1 /tmp/kmsg >/dev/null 2>/tmp/err; cat /tmp/err`)
	require.Equal(t, int32(0), code, out)
	assert.Contains(t, out, "full-allowed")
	assert.Contains(t, out, "Operation not permitted", "opening /dev/kmsg (1:11) is refused by the device cgroup")
}
