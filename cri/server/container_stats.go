package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// cpuSamples remembers the last CPU reading of each container, to turn cumulative
// usage into a rate between two stats calls.
type cpuSamples struct {
	mu   sync.Mutex
	last map[string]cpuSample
}

type cpuSample struct {
	at    time.Time
	usage uint64
}

// rate records a reading and returns nanocores since the previous one (0 at first).
func (c *cpuSamples) rate(id string, at time.Time, usage uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]cpuSample{}
	}
	prev, ok := c.last[id]
	c.last[id] = cpuSample{at, usage}
	if !ok || usage < prev.usage || !at.After(prev.at) {
		return 0
	}
	return uint64(float64(usage-prev.usage) / at.Sub(prev.at).Seconds())
}

// forget drops the reading of a container or pod that is gone.
func (c *cpuSamples) forget(id string) {
	c.mu.Lock()
	delete(c.last, id)
	c.mu.Unlock()
}

// ContainerStats reports one container's CPU, memory and writable layer use.
func (s *Server) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.recs.container(req.GetContainerId())
	if err != nil {
		return nil, err
	}
	st, err := s.containerStats(c)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats reports every container that matches the filter.
func (s *Server) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	f := req.GetFilter()
	resp := &runtimeapi.ListContainerStatsResponse{}
	for _, c := range s.recs.allContainers() {
		if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) ||
			f.GetPodSandboxId() != "" && !strings.HasPrefix(c.PodID, f.GetPodSandboxId()) ||
			!labelsMatch(c.config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		st, err := s.containerStats(c)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

func (s *Server) containerStats(c *containerRecord) (*runtimeapi.ContainerStats, error) {
	st, _, err := s.containerUsage(c)
	return st, err
}

// containerUsage is a container's CRI stats and the cgroup figures they come from (nil
// when the container has no cgroup).
func (s *Server) containerUsage(c *containerRecord) (*runtimeapi.ContainerStats, *cgroups.Stats, error) {
	now := time.Now()
	st := &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{
		Id: c.ID, Metadata: c.config.GetMetadata(), Labels: c.config.GetLabels(), Annotations: c.config.GetAnnotations(),
	}}
	var usage *cgroups.Stats
	if cg, err := s.cgroups.Load(c.CgroupPath); err == nil {
		u, err := cg.Stats()
		if err != nil {
			return nil, nil, err
		}
		st.Cpu, st.Memory = cpuMemory(now, u, s.cpu.rate(c.ID, now, u.CPUUsageNs))
		st.Io = ioUsage(now, u)
		usage = &u
	}
	dir, layer, err := s.engine.LayerUsage(c.ID)
	if err != nil {
		return nil, nil, err
	}
	st.WritableLayer = &runtimeapi.FilesystemUsage{
		Timestamp: now.UnixNano(), FsId: &runtimeapi.FilesystemIdentifier{Mountpoint: dir},
		UsedBytes: &runtimeapi.UInt64Value{Value: layer.Bytes}, InodesUsed: &runtimeapi.UInt64Value{Value: layer.Inodes},
	}
	return st, usage, nil
}

func cpuMemory(now time.Time, u cgroups.Stats, nanoCores uint64) (*runtimeapi.CpuUsage, *runtimeapi.MemoryUsage) {
	ts := now.UnixNano()
	cpu := &runtimeapi.CpuUsage{Timestamp: ts,
		UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: u.CPUUsageNs},
		UsageNanoCores:       &runtimeapi.UInt64Value{Value: nanoCores}}
	mem := &runtimeapi.MemoryUsage{Timestamp: ts,
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: u.MemoryWorkingSet},
		UsageBytes:      &runtimeapi.UInt64Value{Value: u.MemoryUsage},
		RssBytes:        &runtimeapi.UInt64Value{Value: u.MemoryRSS},
		PageFaults:      &runtimeapi.UInt64Value{Value: u.PageFaults},
		MajorPageFaults: &runtimeapi.UInt64Value{Value: u.MajorPageFaults}}
	if u.MemoryLimit > 0 && u.MemoryLimit < 1<<62 && u.MemoryLimit > u.MemoryWorkingSet {
		mem.AvailableBytes = &runtimeapi.UInt64Value{Value: u.MemoryLimit - u.MemoryWorkingSet}
	}
	cpu.Psi, mem.Psi = psi(u.CPUPressure), psi(u.MemoryPressure)
	return cpu, mem
}

// ioUsage is the cgroup's I/O pressure, where the kernel keeps it (cgroup v2).
func ioUsage(now time.Time, u cgroups.Stats) *runtimeapi.IoUsage {
	if u.IOPressure == nil {
		return nil
	}
	return &runtimeapi.IoUsage{Timestamp: now.UnixNano(), Psi: psi(u.IOPressure)}
}

func psi(p *cgroups.Pressure) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	data := func(f cgroups.PressureFigures) *runtimeapi.PsiData {
		return &runtimeapi.PsiData{Total: f.TotalNs, Avg10: f.Avg10, Avg60: f.Avg60, Avg300: f.Avg300}
	}
	return &runtimeapi.PsiStats{Some: data(p.Some), Full: data(p.Full)}
}
