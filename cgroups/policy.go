package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/cpulist"
)

const mib = 1024 * 1024

// Node is what the policy needs to know about the machine.
type Node struct {
	RAMMiB uint64 // the node's RAM, as slurmd's RealMemory
	CPUs   []int  // the CPUs containers may be placed on
	// Load counts the containers pinned to each CPU; cores are chosen least loaded
	// first.
	Load map[int]int
}

// ReadNode reads the node's RAM and the CPUs of the cgroup root.
func ReadNode() (Node, error) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return Node{}, fmt.Errorf("sysinfo: %w", err)
	}
	file := filepath.Join(Root, "cpuset", "cpuset.effective_cpus")
	if unified() {
		file = filepath.Join(Root, "cpuset.cpus.effective")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		if data, err = os.ReadFile("/sys/devices/system/cpu/online"); err != nil {
			return Node{}, fmt.Errorf("read the online CPUs: %w", err)
		}
	}
	cpus, err := cpulist.Parse(strings.TrimSpace(string(data)))
	if err != nil {
		return Node{}, err
	}
	return Node{RAMMiB: uint64(si.Totalram) * uint64(si.Unit) / mib, CPUs: cpus}, nil
}

// Confine turns the resources the kubelet asked for (the allocation, as a Slurm step's
// --mem and CPUs) into the cgroup values slurmd's task/cgroup plugin would set under
// this cgroup.conf. The request is not changed.
//
// Where Slurm would not constrain (ConstrainRAMSpace and ConstrainSwapSpace off,
// ConstrainCores off) the kubelet's own values stay: a Kubernetes memory limit or CPU
// set is always enforced.
func (c SlurmConf) Confine(req *specs.LinuxResources, node Node) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if req != nil {
		cp := *req
		out = &cp
	}
	if c.ConstrainRAMSpace || c.ConstrainSwapSpace {
		var alloc uint64
		if out.Memory != nil && out.Memory.Limit != nil && *out.Memory.Limit > 0 {
			alloc = uint64(*out.Memory.Limit)
		}
		m := c.Memory(alloc, node.RAMMiB)
		mem := specs.LinuxMemory{}
		if out.Memory != nil {
			mem = *out.Memory
		}
		hard, soft := int64(m.Hard), int64(m.Soft)
		mem.Limit, mem.Reservation = &hard, &soft
		if m.Swap > 0 {
			swap := int64(m.Swap)
			mem.Swap = &swap
		}
		mem.Swappiness = c.MemorySwappiness
		out.Memory = &mem
	}
	if c.ConstrainCores && (out.CPU == nil || out.CPU.Cpus == "") {
		if n := cpuCount(out.CPU); n > 0 {
			cpu := specs.LinuxCPU{}
			if out.CPU != nil {
				cpu = *out.CPU
			}
			cpu.Cpus = cpulist.Format(PickCPUs(node.CPUs, n, node.Load))
			out.CPU = &cpu
		}
	}
	return out
}

// MemoryLimits are a step's memory values in bytes; Swap is memory plus swap (cgroup
// v1's memsw), 0 when swap is not constrained.
type MemoryLimits struct {
	Hard, Soft, Swap uint64
}

// Memory computes slurmd's memory limits for an allocation of alloc bytes (0: none)
// on a node with ramMiB of RAM: the hard limit is the allocation times
// AllowedRAMSpace, the soft limit the allocation, both at least MinRAMSpace and at
// most MaxRAMPercent of the RAM; the memory+swap limit adds AllowedSwapSpace of the
// allocation and is at most MaxRAMPercent+MaxSwapPercent of the RAM. Without
// ConstrainRAMSpace the hard limit is the memory+swap one. The arithmetic (single
// precision percentages, truncation to whole bytes) is Slurm's, so that the same
// request gives the same bytes.
func (c SlurmConf) Memory(alloc, ramMiB uint64) MemoryLimits {
	total := ramMiB * mib
	maxRAM := percentOf(total, c.MaxRAMPercent)
	maxSwap := percentOf(total, c.MaxSwapPercent) + maxRAM
	minRAM := c.MinRAMSpace * mib
	allowed := c.AllowedRAMSpace
	if !c.ConstrainRAMSpace {
		allowed = 100
	}
	limit := func(mem uint64, pct float32) uint64 {
		if mem == 0 {
			mem = total
		} else {
			mem = percentOf(mem, pct)
		}
		return min(max(mem, minRAM), maxRAM)
	}
	m := MemoryLimits{Hard: limit(alloc, allowed), Soft: limit(alloc, 100)}
	m.Soft = min(m.Soft, m.Hard)
	swapBase := alloc
	if swapBase == 0 {
		swapBase = total
	}
	memsw := min(max(limit(alloc, allowed)+percentOf(swapBase, c.AllowedSwapSpace), minRAM), maxSwap)
	if c.ConstrainSwapSpace {
		m.Swap = memsw
	}
	if !c.ConstrainRAMSpace {
		m.Hard = memsw
	}
	return m
}

// percentOf is Slurm's percent_in_bytes: the percentage is a C float and the product
// is truncated.
func percentOf(bytes uint64, pct float32) uint64 {
	return uint64(float64(bytes) * (float64(pct) / 100.0))
}

// cpuCount is how many CPUs a CPU quota stands for (rounded up), 0 without a quota.
func cpuCount(cpu *specs.LinuxCPU) int {
	if cpu == nil || cpu.Quota == nil || *cpu.Quota <= 0 {
		return 0
	}
	period := uint64(100000)
	if cpu.Period != nil && *cpu.Period > 0 {
		period = *cpu.Period
	}
	return int((uint64(*cpu.Quota) + period - 1) / period)
}

// PickCPUs chooses n CPUs from cpus, least loaded first, lower numbers first among
// equals; all of them when n is larger.
func PickCPUs(cpus []int, n int, load map[int]int) []int {
	order := slices.Clone(cpus)
	sort.SliceStable(order, func(i, j int) bool {
		if load[order[i]] != load[order[j]] {
			return load[order[i]] < load[order[j]]
		}
		return order[i] < order[j]
	})
	if n < len(order) {
		order = order[:n]
	}
	slices.Sort(order)
	return order
}
