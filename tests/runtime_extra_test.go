package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestLogRotation(t *testing.T) {
	e := newPodEnv(t)
	cfg := e.podConfig("rotate", nil)
	pod := e.runPod(t, cfg)
	id := e.run(t, pod, cfg, "c", `i=0; while true; do i=$((i+1)); echo line $i; sleep 0.05; done`)
	logPath := e.status(t, id).LogPath
	poll(t, func() bool { return strings.Contains(e.logText(t, id), "line 3") }, 10*time.Second, 20*time.Millisecond)

	require.NoError(t, os.Rename(logPath, logPath+".1")) // the kubelet's rotation
	_, err := e.runtime.ReopenContainerLog(context.Background(), &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	require.NoError(t, err)
	poll(t, func() bool {
		data, err := os.ReadFile(logPath)
		return err == nil && strings.Contains(string(data), "stdout F line")
	}, 10*time.Second, 20*time.Millisecond, "the new file gets the output")
	old, err := os.ReadFile(logPath + ".1")
	require.NoError(t, err)
	// Wait for more output to reach the new file: the old one, read before, must not
	// have grown meanwhile.
	cur, err := os.ReadFile(logPath)
	require.NoError(t, err)
	poll(t, func() bool {
		data, err := os.ReadFile(logPath)
		return err == nil && strings.Count(string(data), "\n") > strings.Count(string(cur), "\n")
	}, 10*time.Second, 20*time.Millisecond, "the container goes on writing to the new file")
	again, err := os.ReadFile(logPath + ".1")
	require.NoError(t, err)
	assert.Equal(t, len(old), len(again), "the rotated file is no longer written")

	_, err = e.runtime.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: id})
	require.NoError(t, err)
	_, err = e.runtime.ReopenContainerLog(context.Background(), &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "a stopped container's log cannot be reopened")
}

func TestStatsAndResourceUpdates(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	cfg := e.podConfig("stats", nil)
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", `dd if=/dev/zero of=/tmp/blob bs=1M count=8 2>/dev/null; while true; do :; done`},
		Linux:   &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20}},
	})
	_, err := e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)

	var st *runtimeapi.ContainerStats
	poll(t, func() bool {
		resp, err := e.runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		require.NoError(t, err)
		st = resp.Stats
		return st.WritableLayer.UsedBytes.Value >= 8<<20 && st.Cpu.UsageNanoCores.GetValue() > 0
	}, 20*time.Second, 200*time.Millisecond, "writable layer and CPU rate")
	assert.Positive(t, st.Cpu.UsageCoreNanoSeconds.Value)
	assert.Positive(t, st.Memory.WorkingSetBytes.Value)
	assert.Equal(t, id, st.Attributes.Id)

	list, err := e.runtime.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: pod}})
	require.NoError(t, err)
	assert.Len(t, list.Stats, 1)
	ps, err := e.runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
	require.NoError(t, err)
	assert.Len(t, ps.Stats.Linux.Containers, 1)
	assert.Equal(t, "eth0", ps.Stats.Linux.Network.DefaultInterface.Name)
	assert.Positive(t, ps.Stats.Linux.Process.ProcessCount.Value)
	lps, err := e.runtime.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
	require.NoError(t, err)
	assert.Len(t, lps.Stats, 1)

	_, err = e.runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuShares: 256}})
	require.NoError(t, err)
	sresp, err := e.runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	require.NoError(t, err)
	assert.Equal(t, "134217728", e.cgroupFile(t, id, "memory", "memory.limit_in_bytes"), "the new limit is in the cgroup")
	assert.Equal(t, int64(128<<20), sresp.Status.Resources.Linux.MemoryLimitInBytes, "and in the status")
}

// TestPodStatsComeFromThePodsCgroup: a kubelet pod's stats are its pod cgroup's (the
// cgroup_parent the kubelet made and limited), so the pod's available memory is there
// as the node e2e Summary API spec wants it; they used to be the sum of its containers',
// without a limit.
func TestPodStatsComeFromThePodsCgroup(t *testing.T) {
	parent := fmt.Sprintf("/enroot-cri-test-%d/pod-stats", os.Getpid())
	t.Cleanup(func() { removeCgroupTree(path.Dir(parent)) })
	makeCgroupRoot(t, parent)
	const podLimit = 512 << 20
	require.NoError(t, os.WriteFile(filepath.Join("/sys/fs/cgroup/memory", parent, "memory.limit_in_bytes"), []byte(strconv.Itoa(podLimit)), 0o644))
	e := newPodEnv(t)
	ctx := context.Background()
	cfg := e.podConfig("podcg", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = parent })
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", "while true; do :; done"},
		Linux:   &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 << 20}},
	})
	_, err := e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	var mem *runtimeapi.MemoryUsage
	poll(t, func() bool {
		ps, err := e.runtime.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
		if err != nil || ps.Stats.Linux.Cpu.UsageNanoCores.GetValue() == 0 {
			return false
		}
		mem = ps.Stats.Linux.Memory
		return true
	}, 20*time.Second, 200*time.Millisecond, "a CPU rate for the pod")
	require.NotNil(t, mem.AvailableBytes, "the pod's cgroup has a limit")
	assert.Greater(t, mem.AvailableBytes.Value, uint64(256<<20), "the pod's limit, not the container's")
	assert.LessOrEqual(t, mem.AvailableBytes.Value+mem.WorkingSetBytes.Value, uint64(podLimit))
	assert.Positive(t, mem.WorkingSetBytes.Value)
}

func TestContainerEvents(t *testing.T) {
	e := newPodEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := e.runtime.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	require.NoError(t, err)
	events := make(chan *runtimeapi.ContainerEventResponse, 16)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	cfg := e.podConfig("events", nil)
	pod := e.runPod(t, cfg)
	id := e.run(t, pod, cfg, "c", `sleep 0.5`)
	e.waitExited(t, id)
	_, err = e.runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: id})
	require.NoError(t, err)

	var got []runtimeapi.ContainerEventType
	timeout := time.After(15 * time.Second)
	for len(got) < 4 {
		select {
		case ev := <-events:
			if ev.ContainerId == id {
				got = append(got, ev.ContainerEventType)
				assert.Equal(t, pod, ev.PodSandboxStatus.GetId())
			}
		case <-timeout:
			t.Fatalf("events so far: %v", got)
		}
	}
	assert.Equal(t, []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}, got)
}

func TestPrometheusMetricsAndJSONLogs(t *testing.T) {
	port := freePort(t)
	e := newPodEnvWith(t, fmt.Sprintf("[metrics]\naddress = \"127.0.0.1:%d\"\n", port))
	ctx := context.Background()
	cfg := e.podConfig("metrics", nil)
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"sleep", "100"},
	})
	_, err := e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	_, err = e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.image}})
	require.NoError(t, err)
	_, err = e.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "127.0.0.1:1/nothing:here"}})
	require.Error(t, err)

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	text := string(body)
	for _, want := range []string{
		`enroot_cri_rpc_requests_total{code="OK",method="RunPodSandbox"} 1`,
		`enroot_cri_rpc_requests_total{code="OK",method="PullImage"} 2`,
		`enroot_cri_image_pulls_total{result="built"} 1`,
		`enroot_cri_image_pulls_total{result="present"} 1`,
		`enroot_cri_image_pulls_total{result="failed"} 1`,
		`enroot_cri_containers{state="running"} 1`,
		`enroot_cri_sandboxes{state="ready"} 1`,
		`enroot_cri_images 1`,
		`enroot_cri_gpu_holdings{holder="pod"} 0`,
		`enroot_cri_rpc_duration_seconds_count{method="StartContainer"} 1`,
	} {
		assert.Contains(t, text, want+"\n")
	}
	assert.Regexp(t, `enroot_cri_image_pulled_bytes_total [1-9]`, text)
	assert.Regexp(t, `enroot_cri_image_store_bytes [1-9]`, text)
	assert.Regexp(t, `enroot_cri_rpc_requests_total\{code="(NotFound|Unavailable|Unknown|Internal)",method="PullImage"\} 1`, text)

	// A daemon restart finds the running container's monitor again.
	require.NoError(t, e.stop(t))
	e.start(t)
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Contains(t, string(body), `enroot_cri_monitor_restarts_total{result="readopted"} 1`+"\n")
}

func TestJSONLogs(t *testing.T) {
	d := newDaemon(t, "")
	data, err := os.ReadFile(d.config)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(d.config, append([]byte("log_format = \"json\"\n"), data...), 0o644))
	d.start(t)
	_, err = d.runtime.Version(context.Background(), &runtimeapi.VersionRequest{})
	require.NoError(t, err)
	require.NoError(t, d.stop(t))
	logLines := lines(d.log.String())
	require.NotEmpty(t, logLines)
	for _, l := range logLines {
		var entry map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &entry), "not a JSON log line: %s", l)
		assert.Contains(t, entry, "msg")
		assert.Contains(t, entry, "level")
	}
}

func TestCRIMetrics(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	cfg := e.podConfig("cri-metrics", nil)
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", "dd if=/dev/zero of=/tmp/blob bs=1M count=4 conv=fsync 2>/dev/null; sleep 100"},
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: 80e6, CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512}},
	})
	_, err := e.runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)

	descs, err := e.runtime.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	require.NoError(t, err)
	labels := map[string]int{}
	for _, d := range descs.Descriptors {
		labels[d.Name] = len(d.LabelKeys)
	}
	var values map[string]*runtimeapi.Metric
	var series []*runtimeapi.Metric
	poll(t, func() bool {
		resp, err := e.runtime.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
		require.NoError(t, err)
		values, series = map[string]*runtimeapi.Metric{}, nil
		for _, pm := range resp.PodMetrics {
			if pm.PodSandboxId != pod {
				continue
			}
			all := pm.Metrics
			for _, cm := range pm.ContainerMetrics {
				assert.Equal(t, id, cm.ContainerId)
				all = append(all, cm.Metrics...)
			}
			for _, m := range all {
				require.Contains(t, labels, m.Name, "a metric without a descriptor")
				require.Len(t, m.LabelValues, labels[m.Name], m.Name)
				values[m.Name] = m
				series = append(series, m)
			}
		}
		return values["container_fs_usage_bytes"].GetValue().GetValue() >= 4<<20
	}, 20*time.Second, 200*time.Millisecond)
	v := func(name string) uint64 { require.Contains(t, values, name); return values[name].Value.Value }
	assert.Equal(t, uint64(100000), v("container_spec_cpu_period"))
	assert.Equal(t, uint64(50000), v("container_spec_cpu_quota"))
	page := uint64(os.Getpagesize())
	assert.Equal(t, 80e6/page*page, v("container_spec_memory_limit_bytes"), "the cgroup's limit, page-aligned as the kernel keeps it")
	assert.Positive(t, v("container_memory_usage_bytes"))
	assert.GreaterOrEqual(t, v("container_processes"), uint64(1))
	assert.GreaterOrEqual(t, v("container_threads"), uint64(1))
	assert.Positive(t, v("container_file_descriptors"))
	assert.Positive(t, v("container_fs_limit_bytes"))
	assert.InDelta(t, float64(time.Now().Unix()), float64(v("container_start_time_seconds")), 60)
	assert.Contains(t, values, "container_network_receive_bytes_total")
	assert.Equal(t, []string{"cri-metrics", "test", "c", id}, values["container_memory_rss"].LabelValues[:4])
	assert.Equal(t, runtimeapi.MetricType_COUNTER, values["container_cpu_usage_seconds_total"].MetricType)

	// What the node e2e suite's /metrics/cadvisor spec asks for beyond the above.
	for _, name := range []string{"container_memory_events_max_total", "container_memory_events_high_total", "container_fs_reads_total"} {
		assert.Contains(t, values, name)
	}
	assert.Positive(t, v("container_fs_inodes_total"), "critest asks for the writable layer filesystem's inodes")
	var ulimit uint64
	for _, m := range series {
		if m.Name == "container_ulimits_soft" && m.LabelValues[len(m.LabelValues)-1] == "max_open_files" {
			ulimit = m.Value.Value
		}
	}
	assert.Positive(t, ulimit, "the first process's open-file limit")
	// The writable layer's device is listed, read and write, even where the kernel
	// accounts no block I/O per cgroup (cgroup v1 without a throttle rule; v2's io.stat
	// has it).
	var st unix.Stat_t
	require.NoError(t, unix.Stat(values["container_fs_usage_bytes"].LabelValues[5], &st))
	devNum := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	ops := map[string]bool{}
	for _, m := range series {
		if l := m.LabelValues; m.Name == "container_blkio_device_usage_total" && l[6]+":"+l[7] == devNum {
			ops[l[8]] = true
		}
	}
	assert.Equal(t, map[string]bool{"Read": true, "Write": true}, ops, "block I/O series of %s", devNum)
}
