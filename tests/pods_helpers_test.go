package tests

import (
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/testpoll"
	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// podEnv is a daemon with a CNI bridge network and the busybox image pulled.
type podEnv struct {
	*daemon
	bridge, subnet, ipam string
	image                string
	reg                  *testregistry.Registry
}

// newPodEnv starts a daemon whose CNI network is a private bridge with no route out
// (isGateway without ipMasq), serves the busybox test image and pulls it.
func newPodEnv(t *testing.T) *podEnv {
	t.Helper()
	return newPodEnvWith(t, "")
}

// newPodEnvWith is newPodEnv with extra configuration appended.
func newPodEnvWith(t *testing.T, extra string) *podEnv {
	t.Helper()
	return newPodEnvSlurm(t, extra, "")
}

// newPodEnvSlurm is newPodEnvWith with a Slurm cgroup.conf (none when empty).
func newPodEnvSlurm(t *testing.T, extra, cgroupConf string) *podEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("pods need root")
	}
	needTools(t, "busybox", "ip")
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("CNI plugins are not installed (apt-get install containernetworking-plugins)")
	}
	reg := startRegistry(t, testregistry.Options{})
	pushBusybox(t, reg, "test/busybox:1")
	n := testNetwork(t)
	e := &podEnv{bridge: fmt.Sprintf("ecri%d", n), subnet: fmt.Sprintf("10.231.%d.0/24", n), reg: reg}
	e.daemon = newDaemon(t, "")
	e.ipam = filepath.Join(e.dir, "ipam")
	cniDir := filepath.Join(e.dir, "cni")
	require.NoError(t, os.MkdirAll(cniDir, 0o755))
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"enroot-cri-test","plugins":[
 {"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}`, e.bridge, e.subnet, e.ipam)
	require.NoError(t, os.WriteFile(filepath.Join(cniDir, "10-test.conflist"), []byte(conf), 0o644))
	cfg, err := os.ReadFile(e.config)
	require.NoError(t, err)
	if strings.Contains(extra, "[enroot]\n") { // the test brings its own
		cfg = []byte(strings.Replace(string(cfg), fmt.Sprintf("[enroot]\nconfig_dir = %q\n", filepath.Join(e.dir, "enroot")), "", 1))
	}
	cfg = append(cfg, fmt.Sprintf("[cni]\nconf_dir = %q\nbin_dirs = [\"/usr/lib/cni\"]\n%s", cniDir, extra)...)
	require.NoError(t, os.WriteFile(e.config, cfg, 0o644))
	if cgroupConf != "" {
		require.NoError(t, os.MkdirAll(filepath.Dir(e.slurmConf()), 0o755))
		require.NoError(t, os.WriteFile(e.slurmConf(), []byte(cgroupConf), 0o644))
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", e.bridge).Run() })
	e.start(t)
	e.image = reg.Host + "/test/busybox:1"
	_, err = e.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.image}})
	require.NoError(t, err)
	t.Cleanup(func() { e.removeAllAndCheckLeaks(t) })
	return e
}

// networks are the test networks this process holds (a bridge exists only once a pod
// runs).
var networks = struct {
	mu   sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

// testNetwork picks the test's bridge ecriN on 10.231.N.0/24: N from the test's name,
// the next one while a bridge of that name exists (another test process's). 10.231.250
// and up are the scripts' (demo, critest, node e2e).
func testNetwork(t *testing.T) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(t.Name()))
	start := int(h.Sum32() % 200)
	networks.mu.Lock()
	defer networks.mu.Unlock()
	for i := range 200 {
		n := 20 + (start+i)%200
		if _, err := net.InterfaceByName(fmt.Sprintf("ecri%d", n)); err != nil && !networks.used[n] {
			networks.used[n] = true
			t.Cleanup(func() { networks.mu.Lock(); delete(networks.used, n); networks.mu.Unlock() })
			return n
		}
	}
	t.Fatal("no free test bridge name ecri20..ecri219")
	return 0
}

func (e *podEnv) podConfig(name string, mutate func(*runtimeapi.PodSandboxConfig)) *runtimeapi.PodSandboxConfig {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "test", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(e.dir, "logs", name),
		Labels:       map[string]string{"app": name},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	if mutate != nil {
		mutate(cfg)
	}
	return cfg
}

func (e *podEnv) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	return e.runPodWith(t, cfg, "")
}

// runPodWith runs a pod of a runtime handler (empty: the default one).
func (e *podEnv) runPodWith(t *testing.T, cfg *runtimeapi.PodSandboxConfig, handler string) string {
	t.Helper()
	resp, err := e.runtime.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	require.NoError(t, err)
	return resp.PodSandboxId
}

// run creates and starts a container in pod running sh -c script.
func (e *podEnv) run(t *testing.T, pod string, podCfg *runtimeapi.PodSandboxConfig, name, script string) string {
	t.Helper()
	id := e.create(t, pod, podCfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: e.image},
		Command:  []string{"/bin/sh", "-c", script},
		LogPath:  name + ".log",
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	return id
}

func (e *podEnv) create(t *testing.T, pod string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	resp, err := e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
	require.NoError(t, err)
	return resp.ContainerId
}

func (e *podEnv) status(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := e.runtime.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	require.NoError(t, err)
	return resp.Status
}

// poll is testpoll.Until: cond runs in the test's goroutine until it is true.
var poll = testpoll.Until

// waitExited waits for a container to exit and returns its status.
func (e *podEnv) waitExited(t *testing.T, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	var st *runtimeapi.ContainerStatus
	poll(t, func() bool {
		st = e.status(t, id)
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED
	}, 60*time.Second, 50*time.Millisecond, "container %s did not exit", id)
	return st
}

func (e *podEnv) logText(t *testing.T, id string) string {
	t.Helper()
	data, err := os.ReadFile(e.status(t, id).LogPath)
	require.NoError(t, err)
	return string(data)
}

// removeAllAndCheckLeaks removes every pod and checks that nothing of them remains:
// no mount under the daemon's directories, no cgroup, no namespace pin, no CNI address,
// no shim process.
func (e *podEnv) removeAllAndCheckLeaks(t *testing.T) {
	ctx := context.Background()
	pods, err := e.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	require.NoError(t, err)
	var ids []string
	for _, p := range pods.Items {
		ids = append(ids, p.Id)
		_, err := e.runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
		require.NoError(t, err)
	}
	cs, err := e.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	require.NoError(t, err)
	assert.Empty(t, cs.Containers)
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	assert.NotContains(t, string(mountinfo), e.dir, "mounts left behind")
	for _, id := range ids {
		leftovers, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*/*", id+"*"))
		assert.Empty(t, leftovers)
	}
	// The default parent goes with its last container; another daemon's containers may
	// still be in it.
	var emptyParents []string
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/enroot-cri")
	for _, p := range parents {
		if children, _ := filepath.Glob(filepath.Join(p, "*", "cgroup.procs")); len(children) == 0 {
			emptyParents = append(emptyParents, p)
		}
	}
	assert.Empty(t, emptyParents, "the default cgroup parent is removed when empty")
	ips, _ := filepath.Glob(filepath.Join(e.ipam, "enroot-cri-test", "10.*"))
	assert.Empty(t, ips, "CNI addresses left allocated")
	if nat, err := exec.Command("iptables", "-t", "nat", "-S").Output(); err == nil {
		for _, id := range ids {
			assert.NotContains(t, string(nat), id, "hostPort rules of pod %s left behind", id)
		}
	}
	out, _ := exec.Command("pgrep", "-f", "enroot-cri(-shim)? shim "+e.dir).Output()
	assert.Empty(t, strings.TrimSpace(string(out)), "processes left behind")
	for _, id := range ids {
		out, _ := exec.Command("pgrep", "-f", "pod-holder "+id).Output()
		assert.Empty(t, strings.TrimSpace(string(out)), "PID holder left behind")
	}
	for _, d := range []string{"state/pods", "state/containers", "state/images", "state/monitors", "state/pending", "root/containers"} {
		entries, _ := os.ReadDir(filepath.Join(e.dir, d))
		assert.Empty(t, entries, d)
	}
	if out, err := exec.Command("losetup", "--list", "--noheadings", "--output", "BACK-FILE").Output(); err == nil {
		assert.NotContains(t, string(out), e.dir, "loop devices left attached")
	}
	ports, err := exec.Command("ip", "-o", "link", "show", "master", e.bridge).Output()
	if err == nil {
		assert.Empty(t, strings.TrimSpace(string(ports)), "veth pairs left on the pod network's bridge")
	}
	var strays []string
	for _, pid := range pgrep(e.dir) {
		if e.cmd == nil || e.cmd.Process == nil || pid != strconv.Itoa(e.cmd.Process.Pid) {
			cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			strays = append(strays, pid+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	assert.Empty(t, strays, "processes naming the test's directory, other than the daemon")
}
