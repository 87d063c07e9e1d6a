package tests

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// soak is the state a soak run's workers and killer share.
type soak struct {
	e        *podEnv
	deadline time.Time
	mu       sync.Mutex
	counts   map[string]map[string]int // RPC -> outcome -> count
	errs     []string
	kills    int
}

// The outcomes a call is counted under besides its gRPC code: a retry that found the
// operation done by an attempt the daemon's kill cut off before it answered.
const doneBeforeKill = "done before the kill"

func (s *soak) count(rpc, outcome string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.counts[rpc] == nil {
		s.counts[rpc] = map[string]int{}
	}
	s.counts[rpc][outcome]++
}

func (s *soak) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// do calls an RPC until it succeeds. Unavailable (the daemon is down or not ready
// yet) is retried; after one, an error that done says is the work already done (the
// cut-off attempt did it) ends the retries. Any other error is a failure of the run.
func (s *soak) do(rpc string, call func(context.Context) error, done func(error) bool) bool {
	retried := false
	for {
		if time.Now().After(s.deadline) {
			s.fail("%s: still failing at the deadline", rpc)
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := call(ctx)
		cancel()
		code := status.Code(err)
		switch {
		case err == nil:
			s.count(rpc, "OK")
			return true
		case code == codes.Unavailable:
			s.count(rpc, code.String())
			retried = true
			time.Sleep(50 * time.Millisecond)
		case retried && done != nil && done(err):
			s.count(rpc, doneBeforeKill)
			return true
		default:
			s.count(rpc, code.String())
			s.fail("%s: %v", rpc, err)
			return false
		}
	}
}

// worker runs pods one after another; the last stays for the final check.
func (s *soak) worker(rt runtimeapi.RuntimeServiceClient, w, pods int) {
	for i := range pods {
		name := fmt.Sprintf("soak-%d-%d", w, i)
		cfg := s.e.podConfig(name, nil)
		var pod string
		ok := s.do("RunPodSandbox", func(ctx context.Context) error {
			resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				pod = resp.PodSandboxId
			}
			return err
		}, func(err error) bool {
			pod = s.findPod(rt, name)
			return status.Code(err) == codes.AlreadyExists && pod != ""
		})
		if !ok {
			return
		}
		for c := range 1 + i%2 {
			script := "exec sleep 1000"
			if c == 1 {
				script = "echo second; sleep 0.3"
			}
			if !s.container(rt, pod, cfg, fmt.Sprintf("c%d", c), script) {
				return
			}
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if i == pods-1 {
			return
		}
		if !s.do("StopPodSandbox", func(ctx context.Context) error {
			_, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod})
			return err
		}, nil) {
			return
		}
		if !s.do("RemovePodSandbox", func(ctx context.Context) error {
			_, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod})
			return err
		}, nil) {
			return
		}
	}
}

// container creates and starts one container in pod.
func (s *soak) container(rt runtimeapi.RuntimeServiceClient, pod string, podCfg *runtimeapi.PodSandboxConfig, name, script string) bool {
	var id string
	ok := s.do("CreateContainer", func(ctx context.Context) error {
		resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: podCfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: s.e.image},
				Command: []string{"/bin/sh", "-c", script}, LogPath: name + ".log",
			}})
		if err == nil {
			id = resp.ContainerId
		}
		return err
	}, func(err error) bool {
		id = s.findContainer(rt, pod, name)
		return status.Code(err) == codes.AlreadyExists && id != ""
	})
	if !ok {
		return false
	}
	return s.do("StartContainer", func(ctx context.Context) error {
		_, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
		return err
	}, func(err error) bool {
		return status.Code(err) == codes.FailedPrecondition && s.containerState(rt, id) != runtimeapi.ContainerState_CONTAINER_CREATED
	})
}

// retrying calls a read RPC until the daemon answers.
func (s *soak) retrying(call func(context.Context) error) error {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := call(ctx)
		cancel()
		if status.Code(err) != codes.Unavailable || time.Now().After(s.deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *soak) findPod(rt runtimeapi.RuntimeServiceClient, name string) string {
	var id string
	_ = s.retrying(func(ctx context.Context) error {
		resp, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			LabelSelector: map[string]string{"app": name}}})
		if err == nil && len(resp.Items) == 1 {
			id = resp.Items[0].Id
		}
		return err
	})
	return id
}

func (s *soak) findContainer(rt runtimeapi.RuntimeServiceClient, pod, name string) string {
	var id string
	_ = s.retrying(func(ctx context.Context) error {
		resp, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pod}})
		for _, c := range resp.GetContainers() {
			if c.Metadata.GetName() == name {
				id = c.Id
			}
		}
		return err
	})
	return id
}

func (s *soak) containerState(rt runtimeapi.RuntimeServiceClient, id string) runtimeapi.ContainerState {
	state := runtimeapi.ContainerState_CONTAINER_UNKNOWN
	_ = s.retrying(func(ctx context.Context) error {
		resp, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err == nil {
			state = resp.Status.State
		}
		return err
	})
	return state
}

// killer kills the daemon with SIGKILL at random moments around every interval and
// starts it again at once, as systemd's Restart=always would, until stop closes.
func (s *soak) killer(every time.Duration, stop <-chan struct{}, logs *strings.Builder) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(every/2 + time.Duration(rand.Int64N(int64(every)))):
		}
		s.e.kill()
		logs.WriteString(s.e.log.String())
		s.mu.Lock()
		s.kills++
		s.mu.Unlock()
		if err := s.e.launch(); err != nil {
			s.fail("restart the daemon: %v", err)
			return
		}
	}
}

func (s *soak) report(t *testing.T, pods, workers int, elapsed time.Duration) {
	var rpcs []string
	for rpc := range s.counts {
		rpcs = append(rpcs, rpc)
	}
	slices.Sort(rpcs)
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %d pods by %d workers in %s, daemon killed %d times\n", pods, workers, elapsed.Round(time.Second), s.kills)
	for _, rpc := range rpcs {
		var outcomes []string
		for o, n := range s.counts[rpc] {
			outcomes = append(outcomes, fmt.Sprintf("%s %d", o, n))
		}
		slices.Sort(outcomes)
		fmt.Fprintf(&b, "  %-18s %s\n", rpc, strings.Join(outcomes, ", "))
	}
	t.Log("\n" + b.String())
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

// TestSoak churns pods while the daemon is killed with SIGKILL and restarted, then
// checks that what the runtime reports is what runs and that removing everything
// leaves nothing behind. make soak runs it (ENROOT_CRI_SOAK=1); ENROOT_CRI_SOAK_PODS
// (default 200) and ENROOT_CRI_SOAK_KILL_EVERY (default 10s) size it.
func TestSoak(t *testing.T) {
	if os.Getenv("ENROOT_CRI_SOAK") == "" {
		t.Skip("a soak run takes minutes: make soak")
	}
	const workers = 4
	pods := envInt(t, "ENROOT_CRI_SOAK_PODS", 200)
	every, err := time.ParseDuration(cmp.Or(os.Getenv("ENROOT_CRI_SOAK_KILL_EVERY"), "10s"))
	require.NoError(t, err, "ENROOT_CRI_SOAK_KILL_EVERY")
	e := newPodEnv(t)
	s := &soak{e: e, deadline: time.Now().Add(40 * time.Minute), counts: map[string]map[string]int{}}

	var logs strings.Builder
	stop, killed := make(chan struct{}), make(chan struct{})
	go func() { s.killer(every, stop, &logs); close(killed) }()
	stopKiller := sync.OnceFunc(func() { close(stop); <-killed })
	t.Cleanup(stopKiller) // before the daemon's own cleanup kills it

	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		conn, err := grpc.NewClient("unix://"+e.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		rt := runtimeapi.NewRuntimeServiceClient(conn)
		n := pods / workers
		if w < pods%workers {
			n++
		}
		wg.Go(func() { s.worker(rt, w, n) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopKiller()

	// A clean start on what the last kill left, then the truth of every container.
	e.kill()
	logs.WriteString(e.log.String())
	e.start(t)
	s.report(t, pods, workers, elapsed)
	if len(s.errs) > 0 {
		t.Errorf("%d calls failed:\n%s", len(s.errs), strings.Join(s.errs, "\n"))
		t.Logf("daemon logs (end):\n%s", tail(logs.String(), 8000))
	}
	ctx := context.Background()
	listed, err := e.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	require.NoError(t, err)
	assert.Len(t, listed.Items, min(workers, pods), "each worker's last pod, and no other")
	for _, p := range listed.Items {
		assert.Equal(t, runtimeapi.PodSandboxState_SANDBOX_READY, p.State, p.Metadata.GetName())
	}
	cs, err := e.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	require.NoError(t, err)
	for _, c := range cs.Containers {
		info := e.info(t, c.Id)
		procs, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", info.CgroupPath, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) {
			procs = nil
		} else {
			require.NoError(t, err)
		}
		runs := len(strings.Fields(string(procs))) > 0
		st := e.status(t, c.Id)
		assert.Equal(t, st.State != runtimeapi.ContainerState_CONTAINER_EXITED, runs,
			"container %s (%s) is %s but its cgroup holds %q", c.Id, c.Metadata.GetName(), st.State, strings.TrimSpace(string(procs)))
		if st.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			assert.True(t, alive(info.Pid), "container %s is running: its first process %d", c.Id, info.Pid)
		}
		if c.Metadata.GetName() == "c0" {
			assert.Equal(t, runtimeapi.ContainerState_CONTAINER_RUNNING, st.State, "%s: sleep 1000 runs (%s %s)", c.Id, st.Reason, st.Message)
		}
	}
	// The cleanup removes every pod and checks for leaks.
}
