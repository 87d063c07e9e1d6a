package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/cgroups"
)

func TestStatsCarryLimitsAndPressure(t *testing.T) {
	now := time.Unix(1700000000, 0)
	cpuP := &cgroups.Pressure{Some: cgroups.PressureFigures{Avg10: 1.5, Avg60: 0.5, Avg300: 0.25, TotalNs: 3000},
		Full: cgroups.PressureFigures{Avg10: 0.5, TotalNs: 1000}}
	u := cgroups.Stats{CPUUsageNs: 10, MemoryUsage: 300, MemoryWorkingSet: 200, MemoryLimit: 1000,
		CPUPressure: cpuP, MemoryPressure: &cgroups.Pressure{}, IOPressure: &cgroups.Pressure{Full: cgroups.PressureFigures{TotalNs: 7}}}

	cpu, mem := cpuMemory(now, u, 42)
	assert.Equal(t, uint64(42), cpu.UsageNanoCores.Value)
	require.NotNil(t, mem.AvailableBytes)
	assert.Equal(t, uint64(800), mem.AvailableBytes.Value, "limit less working set")
	require.NotNil(t, cpu.Psi)
	assert.Equal(t, 1.5, cpu.Psi.Some.Avg10)
	assert.Equal(t, uint64(3000), cpu.Psi.Some.Total)
	assert.Equal(t, uint64(1000), cpu.Psi.Full.Total)
	require.NotNil(t, mem.Psi, "all-zero pressure is still pressure the kernel reported")
	assert.Zero(t, mem.Psi.Some.Total)
	io := ioUsage(now, u)
	require.NotNil(t, io)
	assert.Equal(t, now.UnixNano(), io.Timestamp)
	assert.Equal(t, uint64(7), io.Psi.Full.Total)

	// cgroup v1 (no pressure per cgroup) and no limit: nothing made up.
	cpu, mem = cpuMemory(now, cgroups.Stats{MemoryWorkingSet: 200, MemoryLimit: 1 << 63}, 0)
	assert.Nil(t, cpu.Psi)
	assert.Nil(t, mem.Psi)
	assert.Nil(t, mem.AvailableBytes, "an unlimited cgroup has no available figure")
	assert.Nil(t, ioUsage(now, cgroups.Stats{}))
}
