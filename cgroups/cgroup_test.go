package cgroups

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func needCgroupRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	if unified() {
		t.Skip("this test reads cgroup v1 files; cgroup v2 is tested in a VM")
	}
}

func TestCgroupLifecycleV1(t *testing.T) {
	needCgroupRoot(t)
	path := fmt.Sprintf("/enroot-cri-test/%s-%d", t.Name(), os.Getpid())
	limit := int64(64 << 20)
	shares := uint64(512)
	c, err := Create(path, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, CPU: &specs.LinuxCPU{Shares: &shares}})
	require.NoError(t, err)
	t.Cleanup(func() {
		dirs, _ := filepath.Glob(filepath.Join(Root, "*", "enroot-cri-test"))
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	})

	read := func(ctrl, file string) string {
		data, err := os.ReadFile(filepath.Join(Root, ctrl, path, file))
		require.NoError(t, err)
		return strings.TrimSpace(string(data))
	}
	assert.Equal(t, "67108864", read("memory", "memory.limit_in_bytes"))
	assert.Equal(t, "512", read("cpu", "cpu.shares"))

	cmd := exec.Command("sleep", "1000")
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	require.NoError(t, c.Add(cmd.Process.Pid))
	pids, err := c.Pids()
	require.NoError(t, err)
	assert.Equal(t, []int{cmd.Process.Pid}, pids)

	require.NoError(t, c.KillAll(5*time.Second))
	select {
	case err := <-done:
		assert.ErrorContains(t, err, "killed")
	case <-time.After(5 * time.Second):
		t.Fatal("process survived KillAll")
	}
	assert.Equal(t, 0, c.OOMKills())
	require.NoError(t, c.Delete())
	for _, ctrl := range []string{"memory", "cpu", "pids", "freezer", "devices"} {
		assert.NoDirExists(t, filepath.Join(Root, ctrl, path))
	}
	_, err = Load(path)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// The kubelet removes a pod's cgroup with whatever is left under it; a container's
// cgroup that another remover took (here from every hierarchy but one, then that one
// too) is removed, not an error.
func TestDeleteOfACgroupSomeoneElseRemoved(t *testing.T) {
	needCgroupRoot(t)
	path := fmt.Sprintf("/enroot-cri-test/%s-%d", t.Name(), os.Getpid())
	c, err := Create(path, &specs.LinuxResources{})
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, d := range cgroupDirs(path) {
			_ = os.Remove(d)
		}
		dirs, _ := filepath.Glob(filepath.Join(Root, "*", "enroot-cri-test"))
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	})
	dirs := cgroupDirs(path)
	require.Greater(t, len(dirs), 1)
	for _, d := range dirs {
		require.NoError(t, os.Remove(d))
	}
	require.NoError(t, c.Delete())
	assert.Empty(t, cgroupDirs(path))

	// Still there with a process: that is an error.
	c, err = Create(path, &specs.LinuxResources{})
	require.NoError(t, err)
	cmd := exec.Command("sleep", "1000")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	require.NoError(t, c.Add(cmd.Process.Pid))
	assert.Error(t, c.Delete())
	require.NoError(t, c.KillAll(5*time.Second))
	require.NoError(t, c.Delete())
}

func cgroupDirs(path string) []string {
	dirs, _ := filepath.Glob(filepath.Join(Root, "*", path))
	return dirs
}

func TestV1BlockIOAddsUpByDevice(t *testing.T) {
	bytes := []*stats1.BlkIOEntry{{Op: "Read", Major: 8, Minor: 0, Value: 100}, {Op: "Write", Major: 8, Minor: 0, Value: 200},
		{Op: "Total", Major: 8, Minor: 0, Value: 300}, {Op: "Write", Major: 254, Minor: 1, Value: 5}}
	ops := []*stats1.BlkIOEntry{{Op: "Read", Major: 8, Minor: 0, Value: 1}, {Op: "Write", Major: 8, Minor: 0, Value: 2},
		{Op: "Sync", Major: 8, Minor: 0, Value: 3}}
	assert.Equal(t, []BlockIO{
		{Major: 8, Minor: 0, ReadBytes: 100, WriteBytes: 200, Reads: 1, Writes: 2},
		{Major: 254, Minor: 1, WriteBytes: 5},
	}, v1BlockIO(bytes, ops))
	assert.Empty(t, v1BlockIO(nil, nil))
}
