package server

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
)

// metricDefs are the cAdvisor-named metrics this runtime reports for each container.
var metricDefs = []struct {
	name, help string
	kind       runtimeapi.MetricType
	value      func(cgroups.Stats) uint64
}{
	{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed, in nanoseconds", runtimeapi.MetricType_COUNTER,
		func(s cgroups.Stats) uint64 { return s.CPUUsageNs }},
	{"container_memory_usage_bytes", "Current memory usage, including all memory regardless of when it was accessed", runtimeapi.MetricType_GAUGE,
		func(s cgroups.Stats) uint64 { return s.MemoryUsage }},
	{"container_memory_working_set_bytes", "Current working set", runtimeapi.MetricType_GAUGE,
		func(s cgroups.Stats) uint64 { return s.MemoryWorkingSet }},
	{"container_memory_rss", "Size of RSS", runtimeapi.MetricType_GAUGE,
		func(s cgroups.Stats) uint64 { return s.MemoryRSS }},
	{"container_processes", "Number of processes running inside the container", runtimeapi.MetricType_GAUGE,
		func(s cgroups.Stats) uint64 { return s.Pids }},
}

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics reports.
func (s *Server) ListMetricDescriptors(ctx context.Context, _ *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	resp := &runtimeapi.ListMetricDescriptorsResponse{}
	for _, m := range metricDefs {
		resp.Descriptors = append(resp.Descriptors, &runtimeapi.MetricDescriptor{Name: m.name, Help: m.help})
	}
	return resp, nil
}

// ListPodSandboxMetrics reports every pod's container metrics from their cgroups.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	resp := &runtimeapi.ListPodSandboxMetricsResponse{}
	now := time.Now().UnixNano()
	for _, pod := range s.recs.allPods() {
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: pod.ID}
		for _, c := range s.recs.containersOf(pod.ID) {
			cg, err := cgroups.Load(c.CgroupPath)
			if err != nil {
				continue // exited and gone: no data
			}
			st, err := cg.Stats()
			if err != nil {
				continue
			}
			cm := &runtimeapi.ContainerMetrics{ContainerId: c.ID}
			for _, m := range metricDefs {
				cm.Metrics = append(cm.Metrics, &runtimeapi.Metric{Name: m.name, Timestamp: now, MetricType: m.kind,
					Value: &runtimeapi.UInt64Value{Value: m.value(st)}})
			}
			pm.ContainerMetrics = append(pm.ContainerMetrics, cm)
		}
		resp.PodMetrics = append(resp.PodMetrics, pm)
	}
	return resp, nil
}
