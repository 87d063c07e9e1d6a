package server

import (
	"context"
	"slices"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/cri/network"
	"github.com/enroot-cri/enroot-cri/internal/diskusage"
	"github.com/enroot-cri/enroot-cri/internal/hostdev"
	"github.com/enroot-cri/enroot-cri/internal/procs"
)

// The CRI metrics carry cAdvisor's names, so that a kubelet that takes its container
// metrics from the runtime (PodAndContainerStatsFromCRI) exposes what it exposed with
// cAdvisor. Values are integers: *_seconds_total are whole seconds.
var (
	baseLabels      = []string{"pod", "namespace", "container", "id", "image"}
	networkLabels   = append(append([]string{}, baseLabels...), "interface")
	deviceLabels    = append(append([]string{}, baseLabels...), "device")
	failureLabels   = append(append([]string{}, baseLabels...), "failure_type", "scope")
	metricTypes     = map[string]runtimeapi.MetricType{}
	metricDescs     []*runtimeapi.MetricDescriptor
	metricLabelKeys = map[string][]string{}
)

func describe(name, help string, typ runtimeapi.MetricType, labels []string) {
	metricDescs = append(metricDescs, &runtimeapi.MetricDescriptor{Name: name, Help: help, LabelKeys: labels})
	metricTypes[name] = typ
	metricLabelKeys[name] = labels
}

func init() {
	counter, gauge := runtimeapi.MetricType_COUNTER, runtimeapi.MetricType_GAUGE
	for _, d := range []struct {
		name, help string
		typ        runtimeapi.MetricType
		labels     []string
	}{
		{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed, in seconds.", counter, baseLabels},
		{"container_cpu_user_seconds_total", "Cumulative user CPU time consumed, in seconds.", counter, baseLabels},
		{"container_cpu_system_seconds_total", "Cumulative system CPU time consumed, in seconds.", counter, baseLabels},
		{"container_cpu_cfs_periods_total", "Number of elapsed CFS enforcement periods.", counter, baseLabels},
		{"container_cpu_cfs_throttled_periods_total", "Number of throttled CFS periods.", counter, baseLabels},
		{"container_cpu_cfs_throttled_seconds_total", "Total time the container has been throttled, in seconds.", counter, baseLabels},
		{"container_memory_cache", "Page cache memory, in bytes.", gauge, baseLabels},
		{"container_memory_rss", "Anonymous and swap cache memory, in bytes.", gauge, baseLabels},
		{"container_memory_mapped_file", "Mapped file memory, in bytes.", gauge, baseLabels},
		{"container_memory_swap", "Swap used, in bytes.", gauge, baseLabels},
		{"container_memory_usage_bytes", "Memory usage including cache, in bytes.", gauge, baseLabels},
		{"container_memory_working_set_bytes", "Memory usage less inactive file pages, in bytes.", gauge, baseLabels},
		{"container_memory_max_usage_bytes", "Maximum memory usage recorded, in bytes.", gauge, baseLabels},
		{"container_memory_kernel_usage", "Kernel memory usage, in bytes.", gauge, baseLabels},
		{"container_memory_failcnt", "Times the memory limit was hit.", counter, baseLabels},
		{"container_memory_events_max_total", "Times usage was about to go over the memory limit.", counter, baseLabels},
		{"container_memory_events_high_total", "Times usage went over memory.high (cgroup v2; 0 on v1, which has none).", counter, baseLabels},
		{"container_memory_failures_total", "Page faults, by type (pgfault, pgmajfault) and scope (container, hierarchy).", counter, failureLabels},
		{"container_oom_events_total", "Processes the OOM killer ended in the container.", counter, baseLabels},
		{"container_spec_cpu_period", "CPU CFS period of the container, in microseconds.", gauge, baseLabels},
		{"container_spec_cpu_quota", "CPU CFS quota of the container, in microseconds.", gauge, baseLabels},
		{"container_spec_cpu_shares", "CPU shares of the container.", gauge, baseLabels},
		{"container_spec_memory_limit_bytes", "Memory limit of the container's cgroup, in bytes (0: none).", gauge, baseLabels},
		{"container_spec_memory_reservation_limit_bytes", "Memory soft limit of the container, in bytes.", gauge, baseLabels},
		{"container_spec_memory_swap_limit_bytes", "Memory plus swap limit of the container, in bytes.", gauge, baseLabels},
		{"container_start_time_seconds", "Start time of the container since the Unix epoch, in seconds.", gauge, baseLabels},
		{"container_last_seen", "Last time the runtime saw the container, in seconds since the Unix epoch.", gauge, baseLabels},
		{"container_processes", "Processes in the container.", gauge, baseLabels},
		{"container_threads", "Threads in the container.", gauge, baseLabels},
		{"container_threads_max", "Maximum threads allowed in the container (0: no limit).", gauge, baseLabels},
		{"container_file_descriptors", "Open file descriptors of the container's processes.", gauge, baseLabels},
		{"container_sockets", "Open sockets of the container's processes.", gauge, baseLabels},
		{"container_fs_usage_bytes", "Bytes the container's writable layer uses.", gauge, deviceLabels},
		{"container_fs_limit_bytes", "Size of the filesystem of the writable layer, in bytes.", gauge, deviceLabels},
		{"container_fs_inodes_total", "Inodes of the filesystem of the writable layer (cAdvisor's meaning).", gauge, deviceLabels},
		{"container_fs_inodes_free", "Free inodes of the filesystem of the writable layer.", gauge, deviceLabels},
		{"container_fs_reads_bytes_total", "Bytes read from a block device.", counter, deviceLabels},
		{"container_fs_reads_total", "Reads from a block device completed.", counter, deviceLabels},
		{"container_fs_writes_bytes_total", "Bytes written to a block device.", counter, deviceLabels},
		{"container_fs_writes_total", "Writes to a block device completed.", counter, deviceLabels},
		{"container_blkio_device_usage_total", "Block I/O bytes by device and operation.", counter,
			append(append([]string{}, deviceLabels...), "major", "minor", "operation")},
		{"container_ulimits_soft", "Soft resource limits of the container's first process.", gauge,
			append(append([]string{}, baseLabels...), "ulimit")},
		{"container_network_receive_bytes_total", "Bytes received.", counter, networkLabels},
		{"container_network_receive_packets_total", "Packets received.", counter, networkLabels},
		{"container_network_receive_errors_total", "Receive errors.", counter, networkLabels},
		{"container_network_receive_packets_dropped_total", "Received packets dropped.", counter, networkLabels},
		{"container_network_transmit_bytes_total", "Bytes transmitted.", counter, networkLabels},
		{"container_network_transmit_packets_total", "Packets transmitted.", counter, networkLabels},
		{"container_network_transmit_errors_total", "Transmit errors.", counter, networkLabels},
		{"container_network_transmit_packets_dropped_total", "Transmitted packets dropped.", counter, networkLabels},
	} {
		describe(d.name, d.help, d.typ, d.labels)
	}
}

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics returns.
func (s *Server) ListMetricDescriptors(ctx context.Context, req *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: metricDescs}, nil
}

// ListPodSandboxMetrics returns, for every ready pod, its network metrics and its
// running containers' metrics.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, req *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	now := time.Now()
	for _, pod := range s.recs.allPods() {
		if pod.State != podReady {
			continue
		}
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: pod.ID}
		md := pod.config.GetMetadata()
		if pod.Sandbox.NetNS != "" {
			if ifaces, err := network.ReadCounters(pod.Sandbox.NetNS); err == nil {
				for _, n := range ifaces {
					labels := []string{md.GetName(), md.GetNamespace(), "POD", pod.ID, "", n.Name}
					for name, i := range map[string]int{
						"container_network_receive_bytes_total": 0, "container_network_receive_packets_total": 1,
						"container_network_receive_errors_total": 2, "container_network_receive_packets_dropped_total": 3,
						"container_network_transmit_bytes_total": 8, "container_network_transmit_packets_total": 9,
						"container_network_transmit_errors_total": 10, "container_network_transmit_packets_dropped_total": 11,
					} {
						pm.Metrics = append(pm.Metrics, metric(now, name, labels, n.C[i]))
					}
				}
			}
		}
		for _, c := range s.recs.containersOf(pod.ID) {
			if c.State != containerRunning {
				continue
			}
			pm.ContainerMetrics = append(pm.ContainerMetrics, s.containerMetrics(now, pod, c))
		}
		resp.PodMetrics = append(resp.PodMetrics, pm)
	}
	return resp, nil
}

func metric(now time.Time, name string, labels []string, v uint64) *runtimeapi.Metric {
	return &runtimeapi.Metric{Name: name, Timestamp: now.UnixNano(), MetricType: metricTypes[name],
		LabelValues: labels, Value: &runtimeapi.UInt64Value{Value: v}}
}

func (s *Server) containerMetrics(now time.Time, pod *podRecord, c *containerRecord) *runtimeapi.ContainerMetrics {
	md := pod.config.GetMetadata()
	base := []string{md.GetName(), md.GetNamespace(), c.config.GetMetadata().GetName(), c.ID, c.ImageRef}
	cm := &runtimeapi.ContainerMetrics{ContainerId: c.ID}
	add := func(name string, v uint64, extra ...string) {
		cm.Metrics = append(cm.Metrics, metric(now, name, append(append([]string{}, base...), extra...), v))
	}
	const ns = uint64(time.Second)
	var pids []int
	var io []cgroups.BlockIO
	r := c.config.GetLinux().GetResources()
	// The limit the kernel holds (page-aligned; cgroup.conf may have changed it), as
	// cAdvisor reports it; 0 when there is none.
	memLimit := uint64(max(r.GetMemoryLimitInBytes(), 0))
	if cg, err := s.cgroups.Load(c.CgroupPath); err == nil {
		if u, err := cg.Stats(); err == nil {
			add("container_cpu_usage_seconds_total", u.CPUUsageNs/ns)
			add("container_cpu_user_seconds_total", u.CPUUserNs/ns)
			add("container_cpu_system_seconds_total", u.CPUSystemNs/ns)
			add("container_cpu_cfs_periods_total", u.CFSPeriods)
			add("container_cpu_cfs_throttled_periods_total", u.CFSThrottled)
			add("container_cpu_cfs_throttled_seconds_total", u.CFSThrottledNs/ns)
			add("container_memory_cache", u.MemoryCache)
			add("container_memory_rss", u.MemoryRSS)
			add("container_memory_mapped_file", u.MemoryMappedFile)
			add("container_memory_swap", u.MemorySwap)
			add("container_memory_usage_bytes", u.MemoryUsage)
			add("container_memory_working_set_bytes", u.MemoryWorkingSet)
			add("container_memory_max_usage_bytes", u.MemoryMaxUsage)
			add("container_memory_kernel_usage", u.MemoryKernel)
			add("container_memory_failcnt", u.MemoryFailcnt)
			add("container_memory_events_max_total", u.MemoryFailcnt)
			add("container_memory_events_high_total", u.MemoryHighEvents)
			add("container_memory_failures_total", u.PageFaults-min(u.PageFaults, u.MajorPageFaults), "pgfault", "container")
			add("container_memory_failures_total", u.MajorPageFaults, "pgmajfault", "container")
			add("container_threads_max", u.PidsLimit)
			io = u.BlockIO
			memLimit = u.MemoryLimit
			if memLimit >= 1<<62 {
				memLimit = 0
			}
		}
		add("container_oom_events_total", uint64(cg.OOMKills()))
		pids, _ = cg.Pids()
	}
	add("container_spec_cpu_period", uint64(max(r.GetCpuPeriod(), 0)))
	add("container_spec_cpu_quota", uint64(max(r.GetCpuQuota(), 0)))
	add("container_spec_cpu_shares", uint64(max(r.GetCpuShares(), 0)))
	add("container_spec_memory_limit_bytes", memLimit)
	add("container_spec_memory_reservation_limit_bytes", 0)
	add("container_spec_memory_swap_limit_bytes", uint64(max(r.GetMemorySwapLimitInBytes(), 0)))
	add("container_start_time_seconds", uint64(max(c.StartedAt.Unix(), 0)))
	add("container_last_seen", uint64(now.Unix()))
	threads, fds, sockets := procs.Counts(pids)
	add("container_processes", uint64(len(pids)))
	add("container_threads", threads)
	add("container_file_descriptors", fds)
	add("container_sockets", sockets)
	if first := s.engine.State(c.ID).InitPid; first > 0 && slices.Contains(pids, first) {
		if v, ok := procs.SoftLimit(first, "Max open files"); ok {
			add("container_ulimits_soft", v, "max_open_files")
		}
	}
	if dir, u, err := s.engine.LayerUsage(c.ID); err == nil {
		if fs, err := diskusage.Filesystem(dir); err == nil {
			add("container_fs_usage_bytes", u.Bytes, dir)
			add("container_fs_limit_bytes", fs.Bytes, dir)
			add("container_fs_inodes_total", fs.Inodes, dir)
			add("container_fs_inodes_free", fs.InodesFree, dir)
			// The writable layer's device is always listed, with what the container
			// did on it (nothing yet, when the accounting has no entry for it).
			io = withDevice(io, fs.Major, fs.Minor)
		}
	}
	for _, d := range io {
		dev := hostdev.BlockName(d.Major, d.Minor)
		major, minor := strconv.FormatUint(d.Major, 10), strconv.FormatUint(d.Minor, 10)
		add("container_fs_reads_bytes_total", d.ReadBytes, dev)
		add("container_fs_reads_total", d.Reads, dev)
		add("container_fs_writes_bytes_total", d.WriteBytes, dev)
		add("container_fs_writes_total", d.Writes, dev)
		add("container_blkio_device_usage_total", d.ReadBytes, dev, major, minor, "Read")
		add("container_blkio_device_usage_total", d.WriteBytes, dev, major, minor, "Write")
	}
	return cm
}

// withDevice adds a device without I/O to io unless it is there.
func withDevice(io []cgroups.BlockIO, major, minor uint64) []cgroups.BlockIO {
	for _, d := range io {
		if d.Major == major && d.Minor == minor {
			return io
		}
	}
	return append(io, cgroups.BlockIO{Major: major, Minor: minor})
}
