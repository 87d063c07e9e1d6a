package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	stats2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Stats are the usage figures the CRI stats calls report.
type Stats struct {
	CPUUsageNs       uint64 // cumulative CPU time
	MemoryUsage      uint64
	MemoryWorkingSet uint64 // usage less inactive file pages, as the kubelet counts it
	MemoryRSS        uint64
	MemoryLimit      uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	Pids             uint64

	// The rest feed the CRI metrics (cAdvisor's names).
	CPUUserNs, CPUSystemNs   uint64
	CFSPeriods, CFSThrottled uint64
	CFSThrottledNs           uint64
	MemoryCache              uint64
	MemoryMappedFile         uint64
	MemorySwap               uint64
	MemoryMaxUsage           uint64
	MemoryFailcnt            uint64
	MemoryKernel             uint64
	PidsLimit                uint64

	// MemoryHighEvents counts the times usage went over memory.high (cgroup v2; v1 has
	// no such boundary). MemoryFailcnt is the same for the hard limit.
	MemoryHighEvents uint64
	// BlockIO is the cgroup's I/O per block device it touched.
	BlockIO []BlockIO

	// Pressure stall information, on cgroup v2 (nil on v1, which has none per cgroup).
	CPUPressure, MemoryPressure, IOPressure *Pressure
}

// BlockIO is one block device's I/O by a cgroup.
type BlockIO struct {
	Major, Minor          uint64
	ReadBytes, WriteBytes uint64
	Reads, Writes         uint64
}

// v1BlockIO adds up cgroup v1's per-operation entries by device.
func v1BlockIO(bytes, ops []*stats1.BlkIOEntry) []BlockIO {
	var out []BlockIO
	at := func(major, minor uint64) *BlockIO {
		for i := range out {
			if out[i].Major == major && out[i].Minor == minor {
				return &out[i]
			}
		}
		out = append(out, BlockIO{Major: major, Minor: minor})
		return &out[len(out)-1]
	}
	add := func(entries []*stats1.BlkIOEntry, read, write func(*BlockIO) *uint64) {
		for _, e := range entries {
			switch e.Op {
			case "Read":
				*read(at(e.Major, e.Minor)) += e.Value
			case "Write":
				*write(at(e.Major, e.Minor)) += e.Value
			}
		}
	}
	add(bytes, func(d *BlockIO) *uint64 { return &d.ReadBytes }, func(d *BlockIO) *uint64 { return &d.WriteBytes })
	add(ops, func(d *BlockIO) *uint64 { return &d.Reads }, func(d *BlockIO) *uint64 { return &d.Writes })
	return out
}

// Pressure is one resource's pressure stall information: the share of time some or all
// of the cgroup's tasks waited for it.
type Pressure struct {
	Some, Full PressureFigures
}

// PressureFigures are one line of a *.pressure file: averages in percent over 10, 60 and
// 300 seconds, and the total stall time.
type PressureFigures struct {
	Avg10, Avg60, Avg300 float64
	TotalNs              uint64
}

func pressure(p *stats2.PSIStats) *Pressure {
	if p == nil {
		return nil
	}
	figures := func(d *stats2.PSIData) PressureFigures {
		if d == nil {
			return PressureFigures{}
		}
		return PressureFigures{Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300, TotalNs: d.Total * 1000} // total is in µs
	}
	return &Pressure{Some: figures(p.Some), Full: figures(p.Full)}
}

// Stats reads the cgroup's usage.
func (c *Cgroup) Stats() (Stats, error) {
	if c.v2 != nil {
		m, err := c.v2.Stat()
		if err != nil {
			return Stats{}, fmt.Errorf("read cgroup %s: %w", c.path, err)
		}
		var st Stats
		if c := m.CPU; c != nil {
			st.CPUUsageNs = c.UsageUsec * 1000
			st.CPUUserNs, st.CPUSystemNs = c.UserUsec*1000, c.SystemUsec*1000
			st.CFSPeriods, st.CFSThrottled, st.CFSThrottledNs = c.NrPeriods, c.NrThrottled, c.ThrottledUsec*1000
			st.CPUPressure = pressure(c.PSI)
		}
		if m.Io != nil {
			st.IOPressure = pressure(m.Io.PSI)
			for _, e := range m.Io.Usage {
				st.BlockIO = append(st.BlockIO, BlockIO{Major: e.Major, Minor: e.Minor,
					ReadBytes: e.Rbytes, WriteBytes: e.Wbytes, Reads: e.Rios, Writes: e.Wios})
			}
		}
		if mem := m.Memory; mem != nil {
			st.MemoryUsage, st.MemoryRSS, st.MemoryLimit = mem.Usage, mem.Anon, mem.UsageLimit
			st.MemoryWorkingSet = workingSet(mem.Usage, mem.InactiveFile)
			st.PageFaults, st.MajorPageFaults = mem.Pgfault, mem.Pgmajfault
			st.MemoryCache, st.MemoryMappedFile, st.MemorySwap = mem.File, mem.FileMapped, mem.SwapUsage
			st.MemoryMaxUsage, st.MemoryKernel = mem.MaxUsage, mem.KernelStack+mem.Slab
			st.MemoryPressure = pressure(mem.PSI)
		}
		if m.MemoryEvents != nil {
			st.MemoryFailcnt, st.MemoryHighEvents = m.MemoryEvents.Max, m.MemoryEvents.High
		}
		if m.Pids != nil {
			st.Pids, st.PidsLimit = m.Pids.Current, m.Pids.Limit
		}
		return st, nil
	}
	m, err := c.v1.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Stats{}, fmt.Errorf("read cgroup %s: %w", c.path, err)
	}
	var st Stats
	if m.CPU != nil && m.CPU.Usage != nil {
		st.CPUUsageNs = m.CPU.Usage.Total
		st.CPUUserNs, st.CPUSystemNs = m.CPU.Usage.User, m.CPU.Usage.Kernel
	}
	if m.CPU != nil && m.CPU.Throttling != nil {
		t := m.CPU.Throttling
		st.CFSPeriods, st.CFSThrottled, st.CFSThrottledNs = t.Periods, t.ThrottledPeriods, t.ThrottledTime
	}
	if mem := m.Memory; mem != nil && mem.Usage != nil {
		st.MemoryUsage, st.MemoryRSS, st.MemoryLimit = mem.Usage.Usage, mem.TotalRSS, mem.Usage.Limit
		st.MemoryWorkingSet = workingSet(mem.Usage.Usage, mem.TotalInactiveFile)
		st.PageFaults, st.MajorPageFaults = mem.TotalPgFault, mem.TotalPgMajFault
		st.MemoryCache, st.MemoryMappedFile = mem.TotalCache, mem.TotalMappedFile
		st.MemoryMaxUsage, st.MemoryFailcnt = mem.Usage.Max, mem.Usage.Failcnt
		if mem.Swap != nil && mem.Swap.Usage > mem.Usage.Usage {
			st.MemorySwap = mem.Swap.Usage - mem.Usage.Usage // memsw counts memory too
		}
		if mem.Kernel != nil {
			st.MemoryKernel = mem.Kernel.Usage
		}
	}
	if m.Pids != nil {
		st.Pids, st.PidsLimit = m.Pids.Current, m.Pids.Limit
	}
	if b := m.Blkio; b != nil {
		st.BlockIO = v1BlockIO(b.IoServiceBytesRecursive, b.IoServicedRecursive)
	}
	return st, nil
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}

// Update applies new resources to the cgroup.
func (c *Cgroup) Update(resources *specs.LinuxResources) error {
	var err error
	if c.v2 != nil {
		err = c.v2.Update(v2Resources(resources))
	} else {
		c.raiseSwapFirst(resources.Memory)
		err = c.v1.Update(resources)
	}
	if err != nil {
		return fmt.Errorf("update cgroup %s: %w", c.path, err)
	}
	return nil
}

// raiseSwapFirst writes a raised cgroup v1 memory+swap limit before the memory limit:
// the kernel keeps memsw at or above the memory limit, and the update writes the memory
// limit first, which is the right order only for lowering.
func (c *Cgroup) raiseSwapFirst(m *specs.LinuxMemory) {
	if m == nil || m.Swap == nil || *m.Swap <= 0 {
		return
	}
	dir := filepath.Join(Root, "memory", c.path)
	cur, err := os.ReadFile(filepath.Join(dir, "memory.limit_in_bytes"))
	if err != nil {
		return
	}
	if limit, err := strconv.ParseInt(strings.TrimSpace(string(cur)), 10, 64); err == nil && *m.Swap >= limit {
		_ = os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), []byte(strconv.FormatInt(*m.Swap, 10)), 0o644)
	}
}
