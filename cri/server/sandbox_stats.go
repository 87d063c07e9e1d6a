package server

import (
	"context"
	"path"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/cri/network"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// PodSandboxStats reports a pod's containers, their summed CPU and memory, its
// process count and its network interfaces.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	pod, err := s.recs.pod(req.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.podStats(pod)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports every pod that matches the filter.
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	f := req.GetFilter()
	resp := &runtimeapi.ListPodSandboxStatsResponse{}
	for _, p := range s.recs.allPods() {
		if f.GetId() != "" && !strings.HasPrefix(p.ID, f.GetId()) || !labelsMatch(p.config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		st, err := s.podStats(p)
		if err != nil {
			// A pod stopped or removed while the list ran; one pod's stats do not fail
			// the node's (the kubelet's eviction manager and /stats/summary read them).
			logging.From(ctx).Debug("skip pod stats", "pod_id", p.ID, "error", err)
			continue
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

func (s *Server) podStats(pod *podRecord) (*runtimeapi.PodSandboxStats, error) {
	now := time.Now()
	linux := &runtimeapi.LinuxPodSandboxStats{}
	// The kubelet's pod cgroup, where it has one, holds the pod's limit (the pod's
	// available memory) and what its exited containers used, as containerd reports;
	// without one the pod is the sum of its containers.
	sum, fromPod := s.podCgroupStats(pod)
	var nanoCores uint64
	if fromPod {
		nanoCores = s.cpu.rate(pod.ID, now, sum.CPUUsageNs)
	}
	for _, c := range s.recs.containersOf(pod.ID) {
		st, u, err := s.containerUsage(c)
		if err != nil {
			return nil, err
		}
		linux.Containers = append(linux.Containers, st)
		if !fromPod && u != nil {
			sum.CPUUsageNs += u.CPUUsageNs
			sum.MemoryUsage += u.MemoryUsage
			sum.MemoryWorkingSet += u.MemoryWorkingSet
			sum.MemoryRSS += u.MemoryRSS
			sum.PageFaults += u.PageFaults
			sum.MajorPageFaults += u.MajorPageFaults
			sum.Pids += u.Pids
			nanoCores += st.GetCpu().GetUsageNanoCores().GetValue()
		}
	}
	linux.Cpu, linux.Memory = cpuMemory(now, sum, nanoCores)
	linux.Io = ioUsage(now, sum)
	linux.Process = &runtimeapi.ProcessUsage{Timestamp: now.UnixNano(), ProcessCount: &runtimeapi.UInt64Value{Value: sum.Pids}}
	if pod.Sandbox.NetNS != "" && pod.State == podReady {
		net, err := networkStats(pod.Sandbox.NetNS, now)
		if err != nil {
			return nil, err
		}
		linux.Network = net
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: pod.ID, Metadata: pod.config.GetMetadata(),
			Labels: pod.config.GetLabels(), Annotations: pod.config.GetAnnotations()},
		Linux: linux,
	}, nil
}

// podCgroupStats reads the pod's own cgroup: the cgroup_parent its containers' cgroups
// sit in. A pod without one shares the default parent with every other pod.
func (s *Server) podCgroupStats(pod *podRecord) (cgroups.Stats, bool) {
	parent := pod.config.GetLinux().GetCgroupParent()
	if parent == "" {
		return cgroups.Stats{}, false
	}
	child, err := cgroups.ContainerPath(s.driver, parent, pod.ID)
	if err != nil {
		return cgroups.Stats{}, false
	}
	cg, err := s.cgroups.Load(path.Dir(child))
	if err != nil {
		return cgroups.Stats{}, false
	}
	u, err := cg.Stats()
	return u, err == nil
}

// networkStats reads the interface counters of a network namespace.
func networkStats(netns string, now time.Time) (*runtimeapi.NetworkUsage, error) {
	ifaces, err := network.ReadCounters(netns)
	if err != nil {
		return nil, err
	}
	return networkUsage(ifaces, now), nil
}

// networkUsage is the CRI form of a namespace's interface counters: eth0 is the default
// interface, else the first one. A namespace with no interface but lo (a pod whose
// network is being torn down) has no usage: the kubelet reads the default interface of
// any usage it gets and crashes on a nil one (kubelet v1.37 criInterfaceToSummary).
func networkUsage(ifaces []network.Counters, now time.Time) *runtimeapi.NetworkUsage {
	if len(ifaces) == 0 {
		return nil
	}
	usage := &runtimeapi.NetworkUsage{Timestamp: now.UnixNano()}
	for _, n := range ifaces {
		v := func(i int) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: n.C[i]} }
		iface := &runtimeapi.NetworkInterfaceUsage{Name: n.Name, RxBytes: v(0), RxErrors: v(2), TxBytes: v(8), TxErrors: v(10)}
		usage.Interfaces = append(usage.Interfaces, iface)
		if n.Name == "eth0" {
			usage.DefaultInterface = iface
		}
	}
	if usage.DefaultInterface == nil {
		usage.DefaultInterface = usage.Interfaces[0]
	}
	return usage
}
