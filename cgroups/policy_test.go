package cgroups

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryArithmetic(t *testing.T) {
	const node = 16000 // MiB
	conf := func(edit func(*SlurmConf)) SlurmConf {
		c := DefaultSlurmConf()
		c.ConstrainRAMSpace = true
		edit(&c)
		return c
	}
	cases := []struct {
		name       string
		conf       SlurmConf
		allocMiB   uint64
		hard, soft uint64 // MiB
		memsw      uint64 // MiB, 0: not constrained
	}{
		{"allocation as is", conf(func(*SlurmConf) {}), 100, 100, 100, 0},
		{"AllowedRAMSpace 120", conf(func(c *SlurmConf) { c.AllowedRAMSpace = 120 }), 100, 120, 100, 0},
		{"AllowedRAMSpace 80 caps the soft limit", conf(func(c *SlurmConf) { c.AllowedRAMSpace = 80 }), 100, 80, 80, 0},
		{"MinRAMSpace raises a small allocation", conf(func(*SlurmConf) {}), 10, 30, 30, 0},
		{"MinRAMSpace 64", conf(func(c *SlurmConf) { c.MinRAMSpace = 64 }), 50, 64, 64, 0},
		{"MaxRAMPercent caps", conf(func(c *SlurmConf) { c.MaxRAMPercent = 50 }), 10000, 8000, 8000, 0},
		{"no allocation is the node's RAM", conf(func(*SlurmConf) {}), 0, node, node, 0},
		{"no allocation under MaxRAMPercent", conf(func(c *SlurmConf) { c.MaxRAMPercent = 25 }), 0, 4000, 4000, 0},
		{"swap: AllowedSwapSpace of the allocation on top", conf(func(c *SlurmConf) {
			c.ConstrainSwapSpace, c.AllowedSwapSpace = true, 50
		}), 100, 100, 100, 150},
		{"swap with AllowedRAMSpace 120", conf(func(c *SlurmConf) {
			c.AllowedRAMSpace, c.ConstrainSwapSpace, c.AllowedSwapSpace = 120, true, 10
		}), 100, 120, 100, 130},
		{"swap only: the hard limit is memory+swap", conf(func(c *SlurmConf) {
			c.ConstrainRAMSpace, c.AllowedRAMSpace, c.ConstrainSwapSpace, c.AllowedSwapSpace = false, 150, true, 10
		}), 100, 110, 100, 110},
		{"swap capped by MaxRAMPercent+MaxSwapPercent", conf(func(c *SlurmConf) {
			c.MaxRAMPercent, c.MaxSwapPercent, c.ConstrainSwapSpace, c.AllowedSwapSpace = 50, 1, true, 100
		}), 8000, 8000, 8000, 8160},
		{"swap raised to MinRAMSpace", conf(func(c *SlurmConf) { c.ConstrainSwapSpace = true }), 10, 30, 30, 30},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.conf.Memory(tc.allocMiB*mib, node)
			assert.Equal(t, MemoryLimits{Hard: tc.hard * mib, Soft: tc.soft * mib, Swap: tc.memsw * mib}, m)
		})
	}
}

// Slurm multiplies by a C float percentage: 33.33% of 1000 MiB is 349490380.8 in
// exact arithmetic but 349490400 in slurmd's, because float32(33.33) is
// 33.33000183105469.
func TestMemoryArithmeticIsSlurms(t *testing.T) {
	c := DefaultSlurmConf()
	c.ConstrainRAMSpace, c.AllowedRAMSpace = true, 33.33
	assert.Equal(t, uint64(349490400), c.Memory(1000*mib, 16000).Hard)
}

func TestConfine(t *testing.T) {
	limit, quota, period := int64(100*mib), int64(150000), uint64(100000)
	req := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
	}
	node := Node{RAMMiB: 16000, CPUs: []int{0, 1, 2, 3}, Load: map[int]int{0: 2, 1: 1}}

	// Slurm's defaults constrain nothing: the kubelet's values stay.
	got := DefaultSlurmConf().Confine(req, node)
	assert.Equal(t, limit, *got.Memory.Limit)
	assert.Nil(t, got.Memory.Reservation)
	assert.Empty(t, got.CPU.Cpus)

	c := DefaultSlurmConf()
	c.ConstrainRAMSpace, c.AllowedRAMSpace, c.ConstrainCores = true, 120, true
	c.ConstrainSwapSpace, c.AllowedSwapSpace = true, 10
	swappiness := uint64(5)
	c.MemorySwappiness = &swappiness
	got = c.Confine(req, node)
	assert.Equal(t, int64(120*mib), *got.Memory.Limit)
	assert.Equal(t, int64(100*mib), *got.Memory.Reservation)
	assert.Equal(t, int64(130*mib), *got.Memory.Swap)
	assert.Equal(t, uint64(5), *got.Memory.Swappiness)
	assert.Equal(t, "2-3", got.CPU.Cpus, "1.5 CPUs of quota take the two least loaded CPUs")
	assert.Equal(t, int64(100*mib), *req.Memory.Limit, "the request is not changed")
	assert.Empty(t, req.CPU.Cpus)

	// The kubelet's CPU manager choice is kept.
	pinned := *req
	pinned.CPU = &specs.LinuxCPU{Cpus: "0"}
	assert.Equal(t, "0", c.Confine(&pinned, node).CPU.Cpus)
	// Without a quota there is no CPU count to confine to.
	assert.Nil(t, c.Confine(&specs.LinuxResources{}, node).CPU)
}

func TestPickCPUs(t *testing.T) {
	assert.Equal(t, []int{1, 4}, PickCPUs([]int{0, 1, 2, 4}, 2, map[int]int{0: 1, 2: 3}))
	assert.Equal(t, []int{0, 1}, PickCPUs([]int{0, 1}, 5, nil))
}

func TestDeviceRules(t *testing.T) {
	all := DeviceRules(true, nil)
	require.Len(t, all, 1)
	assert.True(t, all[0].Allow)
	assert.Equal(t, "a", all[0].Type)

	rules := DeviceRules(false, []specs.LinuxDevice{{Path: "/dev/nvidia0", Type: "c", Major: 195, Minor: 0}, {Path: "/dev/x", Type: "p"}})
	assert.False(t, rules[0].Allow, "deny everything first")
	last := rules[len(rules)-1]
	assert.Equal(t, []any{true, "c", int64(195), int64(0), "rwm"}, []any{last.Allow, last.Type, *last.Major, *last.Minor, last.Access})
	for _, r := range rules {
		require.NotNil(t, r.Major)
		require.NotNil(t, r.Minor)
	}
}
