// Command bench-reads measures the CRI read calls a kubelet makes all the time
// (ListContainers, ListPodSandbox, ContainerStatus, PodSandboxStatus, ListContainerStats,
// ListPodSandboxStats) on a node of PODS pods with two running containers each, and
// prints their 50th and 99th percentiles, one line per call: "NAME p50_us p99_us".
// With -procs, it then prints the memory of the processes whose command line matches
// (the runtime's per-pod or per-container processes): "memory COUNT RSS_KB PSS_KB".
// With -n 0 it makes no read calls and only prints the memory. make bench and make
// bench-start run it against enroot-cri and containerd in the same invocation.
//
//	bench-reads -endpoint unix:///run/x.sock -image IMAGE [-pods 100] [-n 500] [-procs REGEXP]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "the runtime's CRI endpoint (unix:///path)")
	image := flag.String("image", "", "an image the runtime has, with sleep")
	pods := flag.Int("pods", 100, "pods to run, two containers each")
	n := flag.Int("n", 500, "calls of each kind measured (0: none, memory only)")
	procs := flag.String("procs", "", "regular expression of the command lines whose memory is summed")
	flag.Parse()
	if err := run(*endpoint, *image, *pods, *n, *procs); err != nil {
		fmt.Fprintf(os.Stderr, "bench-reads: %v\n", err)
		os.Exit(1)
	}
}

func run(endpoint, image string, pods, n int, procs string) error {
	var match *regexp.Regexp
	if procs != "" {
		var err error
		if match, err = regexp.Compile(procs); err != nil {
			return fmt.Errorf("-procs: %w", err)
		}
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx := context.Background()
	podIDs, containerIDs, err := populate(ctx, rt, image, pods)
	defer cleanup(rt, podIDs)
	if err != nil {
		return err
	}
	// The stats calls read every container's cgroup: a tenth as many calls.
	calls := []struct {
		name  string
		stats bool
		call  func(i int) error
	}{
		{"ListContainers", false, func(int) error {
			_, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		}},
		{"ListPodSandbox", false, func(int) error {
			_, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
			return err
		}},
		{"ContainerStatus", false, func(i int) error {
			_, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: containerIDs[i%len(containerIDs)]})
			return err
		}},
		{"PodSandboxStatus", false, func(i int) error {
			_, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podIDs[i%len(podIDs)]})
			return err
		}},
		{"ListContainerStats", true, func(int) error {
			_, err := rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
			return err
		}},
		{"ListPodSandboxStats", true, func(int) error {
			_, err := rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return err
		}},
	}
	fmt.Printf("# %d pods, %d containers, %d calls each (stats: %d)\n", len(podIDs), len(containerIDs), n, max(n/10, 10))
	for _, c := range calls {
		if n == 0 {
			break
		}
		n := n
		if c.stats {
			n = max(n/10, 10)
		}
		durations := make([]time.Duration, 0, n)
		for i := range n {
			t0 := time.Now()
			if err := c.call(i); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			durations = append(durations, time.Since(t0))
		}
		slices.Sort(durations)
		fmt.Printf("%s %d %d\n", c.name, durations[n/2].Microseconds(), durations[n*99/100].Microseconds())
	}
	if match != nil {
		count, rss, pss := memory(match)
		fmt.Printf("memory %d %d %d\n", count, rss, pss)
	}
	return nil
}

// memory sums the resident (VmRSS) and proportional (Pss) set sizes, in KiB, of the
// processes whose command line (arguments joined by spaces) matches.
func memory(match *regexp.Regexp) (count int, rss, pss int64) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !match.MatchString(strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))) {
			continue
		}
		count++
		rss += field("/proc/"+e.Name()+"/status", "VmRSS:")
		pss += field("/proc/"+e.Name()+"/smaps_rollup", "Pss:")
	}
	return count, rss, pss
}

// field reads "NAME value kB" from a /proc file.
func field(path, name string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// populate runs pods host-network pods (no CNI in the measurement) with two sleeping
// containers each, two at a time.
func populate(ctx context.Context, rt runtimeapi.RuntimeServiceClient, image string, pods int) ([]string, []string, error) {
	var mu sync.Mutex
	var podIDs, containerIDs []string
	var firstErr error
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i := range pods {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pod, ids, err := onePod(ctx, rt, image, i)
			mu.Lock()
			defer mu.Unlock()
			if pod != "" {
				podIDs = append(podIDs, pod)
			}
			containerIDs = append(containerIDs, ids...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	wg.Wait()
	return podIDs, containerIDs, firstErr
}

func onePod(ctx context.Context, rt runtimeapi.RuntimeServiceClient, image string, i int) (string, []string, error) {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("reads-%d", i), Namespace: "bench", Uid: fmt.Sprintf("reads-%d", i)},
		// As a kubelet with the cgroupfs driver gives it (containerd needs one for pod stats).
		Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: fmt.Sprintf("/bench-reads/pod%d", i), SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}},
	}
	resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return "", nil, fmt.Errorf("run pod: %w", err)
	}
	var ids []string
	for c := range 2 {
		cr, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: resp.PodSandboxId, SandboxConfig: cfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: fmt.Sprintf("c%d", c)},
				Image: &runtimeapi.ImageSpec{Image: image}, Command: []string{"sleep", "3600"}}})
		if err != nil {
			return resp.PodSandboxId, ids, fmt.Errorf("create container: %w", err)
		}
		ids = append(ids, cr.ContainerId)
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			return resp.PodSandboxId, ids, fmt.Errorf("start container: %w", err)
		}
	}
	return resp.PodSandboxId, ids, nil
}

func cleanup(rt runtimeapi.RuntimeServiceClient, pods []string) {
	ctx := context.Background()
	for _, p := range pods {
		_, _ = rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p})
		_, _ = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p})
	}
}
