package cgroups

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/cpulist"
)

// These tests run where the host has a pure cgroup v2 hierarchy: in the qemu guest
// of make test-cgroupv2.
func needCgroupV2(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	if !unified() {
		t.Skip("cgroup v2 only; run make test-cgroupv2")
	}
}

// createV2 creates a test cgroup and removes it and its parent at the end.
func createV2(t *testing.T, name string, res *specs.LinuxResources) (*Cgroup, string) {
	t.Helper()
	path := "/enroot-cri-test/" + name
	c, err := Create(path, res)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = c.KillAll(5 * time.Second)
		assert.NoError(t, c.Delete())
		_ = os.Remove(filepath.Join(Root, "enroot-cri-test"))
	})
	return c, path
}

func readV2(t *testing.T, path, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Root, path, file))
	require.NoError(t, err)
	return strings.TrimSpace(string(data))
}

// held starts sh -c script in the cgroup: the shell waits on stdin until the process
// is in the cgroup, so nothing runs outside it.
func held(t *testing.T, c *Cgroup, script string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read go; "+script)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	require.NoError(t, c.Add(cmd.Process.Pid))
	_, err = stdin.Write([]byte("go\n"))
	require.NoError(t, err)
	return cmd, out
}

func TestCgroupV2SlurmLimits(t *testing.T) {
	needCgroupV2(t)
	conf := DefaultSlurmConf()
	conf.ConstrainRAMSpace, conf.AllowedRAMSpace, conf.ConstrainCores = true, 120, true
	conf.ConstrainSwapSpace, conf.AllowedSwapSpace = true, 10
	limit, quota, period, pids := int64(100*mib), int64(100000), uint64(100000), int64(32)
	node, err := ReadNode()
	require.NoError(t, err)
	res := conf.Confine(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit}, CPU: &specs.LinuxCPU{Quota: &quota, Period: &period},
		Pids: &specs.LinuxPids{Limit: &pids},
	}, node)
	res.Devices = DeviceRules(false, nil)
	c, path := createV2(t, "limits", res)

	assert.Equal(t, "125829120", readV2(t, path, "memory.max"), "AllowedRAMSpace=120 of 100 MiB")
	assert.Equal(t, "104857600", readV2(t, path, "memory.high"), "the soft limit is memory.high, as Slurm's cgroup/v2 sets it")
	assert.Equal(t, "10485760", readV2(t, path, "memory.swap.max"), "swap is memory+swap less memory")
	assert.Equal(t, "0", readV2(t, path, "cpuset.cpus"), "one CPU, the least loaded")
	assert.Equal(t, "32", readV2(t, path, "pids.max"))

	limit, quota = 200*mib, 200000
	up := conf.Confine(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit},
		CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}}, node)
	require.NoError(t, c.Update(up))
	assert.Equal(t, "251658240", readV2(t, path, "memory.max"))
	assert.Equal(t, "20971520", readV2(t, path, "memory.swap.max"))
	assert.Equal(t, cpulist.Format(PickCPUs(node.CPUs, 2, nil)), readV2(t, path, "cpuset.cpus"))

	st, err := c.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(251658240), st.MemoryLimit)
	// The kubelet (KubeletPSI) reports each cgroup's pressure from these.
	for name, p := range map[string]*Pressure{"cpu": st.CPUPressure, "memory": st.MemoryPressure, "io": st.IOPressure} {
		assert.NotNil(t, p, "%s.pressure", name)
	}
}

func TestCgroupV2DeviceFilter(t *testing.T) {
	needCgroupV2(t)
	c, _ := createV2(t, "devices", &specs.LinuxResources{Devices: DeviceRules(false, nil)})
	cmd, out := held(t, c, "head -c1 /dev/full | wc -c; head -c1 /dev/kmsg; echo kmsg=$?")
	require.NoError(t, cmd.Wait(), out.String())
	assert.Contains(t, out.String(), "1\n", "/dev/full is on the allow-list")
	assert.Contains(t, out.String(), "Operation not permitted", "/dev/kmsg is not")
	assert.Contains(t, out.String(), "kmsg=1")

	open, _ := createV2(t, "privileged", &specs.LinuxResources{Devices: DeviceRules(true, nil)})
	t.Run("privileged", func(t *testing.T) {
		cmd, out := held(t, open, "head -c1 /dev/kmsg >/dev/null; echo kmsg=$?")
		require.NoError(t, cmd.Wait(), out.String())
		assert.Equal(t, "kmsg=0\n", out.String())
	})
}

func TestCgroupV2OOMKill(t *testing.T) {
	needCgroupV2(t)
	limit := int64(16 * mib)
	swap := limit // no swap on top
	c, _ := createV2(t, "oom", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &swap}})
	cmd, out := held(t, c, "tail /dev/zero")
	err := cmd.Wait()
	require.Error(t, err, out.String())
	assert.Contains(t, err.Error(), "killed")
	assert.Positive(t, c.OOMKills())
}

// A container bound to one MIG slice: its capability node (a character device of a
// major no driver owns here, so an allowed open fails with ENXIO) opens, another
// slice's is refused by the eBPF filter (EPERM).
func TestCgroupV2BoundSliceOnly(t *testing.T) {
	needCgroupV2(t)
	dir := t.TempDir()
	for name, minor := range map[string]uint32{"own": 110, "other": 112} {
		require.NoError(t, unix.Mknod(filepath.Join(dir, name), unix.S_IFCHR|0o666, int(unix.Mkdev(195, minor))))
	}
	c, _ := createV2(t, "slice", &specs.LinuxResources{Devices: DeviceRules(false,
		[]specs.LinuxDevice{{Path: "/dev/nvidia-caps/nvidia-cap10", Type: "c", Major: 195, Minor: 110}})})
	cmd, out := held(t, c, "head -c1 "+dir+"/own; head -c1 "+dir+"/other; true")
	require.NoError(t, cmd.Wait(), out.String())
	assert.Contains(t, out.String(), "own: No such device or address")
	assert.Contains(t, out.String(), "other: Operation not permitted")
}
