package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/enroot-cri/enroot-cri/ledger"
	"github.com/enroot-cri/enroot-cri/mig"
)

// gpuEnv is a pod environment whose daemon sees go-nvml's fake DGX A100 (GPUs 6 and 7
// in MIG mode) and a fake /dev tree with real character device nodes. No driver owns
// major 195 here, so opening an allowed node fails with ENXIO and a node the device
// cgroup denies with EPERM.
type gpuEnv struct {
	*podEnv
	gpuDir string
	site   string // the Enroot configuration of the enroot handler
	inv    mig.Inventory
}

// capMinor is the capability minor the fake mig-minors gives GPU 6's or 7's GPU
// instance gi (ci=false) or its compute instance 0 (ci=true).
func capMinor(gpu, gi int, ci bool) int {
	m := 10 + 20*(gpu-6) + 2*gi
	if ci {
		m++
	}
	return m
}

func newGPUEnv(t *testing.T) *gpuEnv {
	t.Helper()
	return newGPUEnvWith(t, "", "")
}

// newGPUEnvWith is newGPUEnv with a Slurm cgroup.conf and more [gpus] keys.
func newGPUEnvWith(t *testing.T, cgroupConf, gpus string) *gpuEnv {
	t.Helper()
	if nvmlFake == "" {
		t.Skip("enroot-cri-nvml with fake machines was not built (needs a C compiler)")
	}
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	dir := t.TempDir()
	// A container of an Enroot handler binds the device nodes as its user namespace's
	// root: the fake /dev must be reachable, as the host's is.
	for _, d := range []string{filepath.Dir(dir), dir} {
		require.NoError(t, os.Chmod(d, 0o755))
	}
	dev := filepath.Join(dir, "dev")
	require.NoError(t, os.MkdirAll(filepath.Join(dev, "nvidia-caps"), 0o755))
	mknod := func(name string, minor int) {
		require.NoError(t, unix.Mknod(filepath.Join(dev, name), unix.S_IFCHR|0o666, int(unix.Mkdev(195, uint32(minor)))))
	}
	for i := 0; i < 8; i++ {
		mknod(fmt.Sprintf("nvidia%d", i), i)
	}
	mknod("nvidiactl", 255)
	mknod("nvidia-uvm", 254)
	var minors strings.Builder
	for gpu, gis := range map[int]int{6: 7, 7: 2} {
		for gi := 0; gi < gis; gi++ {
			for _, ci := range []bool{false, true} {
				m := capMinor(gpu, gi, ci)
				key := fmt.Sprintf("gpu%d/gi%d/access", gpu, gi)
				if ci {
					key = fmt.Sprintf("gpu%d/gi%d/ci0/access", gpu, gi)
				}
				fmt.Fprintf(&minors, "%s %d\n", key, m)
				mknod(fmt.Sprintf("nvidia-caps/nvidia-cap%d", m), 100+m)
			}
		}
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mig-minors"), []byte(minors.String()), 0o444))
	helper := filepath.Join(dir, "nvml.sh")
	require.NoError(t, os.WriteFile(helper, []byte("#!/bin/sh\nexec "+nvmlFake+" --fake dgxa100\n"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "cdi"), 0o755))
	site := siteDir(t)
	extra := fmt.Sprintf("[runtimes.enroot]\nenroot_config_dir = %q\n[gpus]\nnvml_helper = %q\ndev_root = %q\nmig_minors = %q\ncdi_spec_dirs = [%q]\n%s",
		site, helper, dev, filepath.Join(dir, "mig-minors"), filepath.Join(dir, "cdi"), gpus)
	e := &gpuEnv{podEnv: newPodEnvSlurm(t, extra, cgroupConf), gpuDir: dir, site: site}
	out, err := exec.Command(helper).Output()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(out, &e.inv))
	return e
}

// createGPU creates a container asking for GPUs with CDI names (nvidia.com/gpu=...)
// and annotations; it returns the ID or the error.
func (e *gpuEnv) createGPU(pod string, podCfg *runtimeapi.PodSandboxConfig, name, script string,
	cdi []string, annotations map[string]string) (string, error) {
	return e.create2(pod, podCfg, name, script, cdi, nil, annotations)
}

// create2 is createGPU with environment variables.
func (e *gpuEnv) create2(pod string, podCfg *runtimeapi.PodSandboxConfig, name, script string,
	cdi []string, envs []*runtimeapi.KeyValue, annotations ...map[string]string) (string, error) {
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", script}, LogPath: name + ".log", Envs: envs,
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: &runtimeapi.Int64Value{Value: 0}}},
	}
	if len(annotations) > 0 {
		cfg.Annotations = annotations[0]
	}
	for _, n := range cdi {
		cfg.CDIDevices = append(cfg.CDIDevices, &runtimeapi.CDIDevice{Name: "nvidia.com/gpu=" + n})
	}
	resp, err := e.runtime.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		return "", err
	}
	return resp.ContainerId, nil
}

func (e *gpuEnv) runToExit(t *testing.T, id string) string {
	t.Helper()
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	e.waitExited(t, id)
	return strings.Join(lines(e.crictl(t, "logs", id)), "\n")
}

// cli runs an enroot-cri command against the daemon's configuration.
func (e *gpuEnv) cli(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(enrootCRI, append(args, "--config", e.config)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func assertCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	require.Error(t, err)
	st, _ := status.FromError(err)
	assert.Equal(t, code, st.Code(), err.Error())
	assert.Contains(t, st.Message(), contains)
}

func TestGPUBindingAndLedger(t *testing.T) {
	e := newGPUEnv(t)
	none := map[string]string{"gpus.enroot-cri.io/driver": "none"}
	mig6 := e.inv.GPUs[6].Slices
	require.Len(t, mig6, 7)
	cfg := e.podConfig("gpu", nil)
	pod := e.runPod(t, cfg)

	// Bound to one slice: its nodes open (ENXIO: no driver here), another slice's
	// capability node is refused by the device cgroup even when the container makes it.
	own := capMinor(6, 0, false)
	other := capMinor(6, 1, false)
	a, err := e.createGPU(pod, cfg, "a", fmt.Sprintf(`echo "env=$NVIDIA_VISIBLE_DEVICES $CUDA_VISIBLE_DEVICES"
ls /dev/nvidia-caps | tr '\n' ' '; echo
head -c1 /dev/nvidia-caps/nvidia-cap%d 2>&1 | sed 's/^/own: /'
head -c1 /dev/nvidia6 2>&1 | sed 's/^/parent: /'
mknod /tmp/other c 195 %d && head -c1 /tmp/other 2>&1 | sed 's/^/other: /'
mknod /tmp/gpu2 c 195 2 && head -c1 /tmp/gpu2 2>&1 | sed 's/^/gpu2: /'`, own, 100+other), []string{mig6[0].UUID}, none)
	require.NoError(t, err)
	out := e.runToExit(t, a)
	assert.Contains(t, out, "env="+mig6[0].UUID+" "+mig6[0].UUID)
	assert.Contains(t, out, fmt.Sprintf("nvidia-cap%d nvidia-cap%d", own, own+1), "the slice's GI and CI capability nodes")
	assert.NotContains(t, out, fmt.Sprintf("nvidia-cap%d ", other))
	assert.Contains(t, out, "own: head: /dev/nvidia-caps/nvidia-cap10: No such device or address")
	assert.Contains(t, out, "parent: head: /dev/nvidia6: No such device or address")
	assert.Contains(t, out, "other: head: /tmp/other: Operation not permitted")
	assert.Contains(t, out, "gpu2: head: /tmp/gpu2: Operation not permitted")

	// The ledger refuses the slice to a second container, naming the holder.
	_, err = e.createGPU(pod, cfg, "b", "true", []string{mig6[0].UUID}, none)
	assertCode(t, err, codes.FailedPrecondition, "GPU "+mig6[0].UUID+" is held by container "+a[:12]+" (test/gpu/a)")
	_, err = e.createGPU(pod, cfg, "b", "true", []string{"9"}, none)
	assertCode(t, err, codes.InvalidArgument, `GPU "9": no GPU with index 9`)

	// Runtime-side allocation takes free slices of the profile only.
	c, err := e.createGPU(pod, cfg, "c", `echo "$NVIDIA_VISIBLE_DEVICES"`, nil,
		map[string]string{"gpus.enroot-cri.io/mig-profile": "1g.5gb", "gpus.enroot-cri.io/count": "2", "gpus.enroot-cri.io/driver": "none"})
	require.NoError(t, err)
	assert.Equal(t, mig6[1].UUID+","+mig6[2].UUID, e.runToExit(t, c))
	_, err = e.createGPU(pod, cfg, "d", "true", nil, map[string]string{"gpus.enroot-cri.io/mig-profile": "7g.40gb"})
	assertCode(t, err, codes.InvalidArgument, `no "7g.40gb" on this node (it has gpu, 1g.5gb, 3g.20gb, 4g.20gb)`)

	gpus, err := e.cli(t, nil, "gpus")
	require.NoError(t, err, gpus)
	assert.Regexp(t, `6:0\s+`+mig6[0].UUID+`\s+1g.5gb \(GI 0, CI 0\).*container `+a[:12]+` \(test/gpu/a\)`, gpus)

	// A Slurm job's prolog claims a whole GPU; pods are refused it until the epilog.
	job := []string{"SLURM_JOB_ID=77", "SLURM_JOB_USER=alice", "SLURM_JOB_GPUS=2"}
	out, err = e.cli(t, job, "slurm", "prolog")
	require.NoError(t, err, out)
	assert.Contains(t, out, "Slurm job 77 holds GPU(s) "+e.inv.GPUs[2].UUID)
	_, err = e.createGPU(pod, cfg, "e", "true", []string{"2"}, none)
	assertCode(t, err, codes.FailedPrecondition, "is held by Slurm job 77")
	out, err = e.cli(t, job, "slurm", "prolog")
	require.NoError(t, err, "a second prolog of the same job is not a conflict: %s", out)
	out, err = e.cli(t, []string{"SLURM_JOB_ID=78", "CUDA_VISIBLE_DEVICES=" + mig6[0].UUID}, "slurm", "prolog")
	require.Error(t, err, "a job is refused a slice a pod holds")
	assert.Contains(t, out, "held by container "+a[:12])
	out, err = e.cli(t, job, "slurm", "epilog")
	require.NoError(t, err, out)
	assert.Contains(t, out, "Slurm job 77 released 1 GPU(s)")
	id, err := e.createGPU(pod, cfg, "e", "true", []string{"2"}, none)
	require.NoError(t, err)

	// Removing a container releases its claims; a restart keeps the others and drops
	// claims of containers that no longer exist.
	_, err = e.runtime.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: a})
	require.NoError(t, err)
	b, err := e.createGPU(pod, cfg, "b", "true", []string{mig6[0].UUID}, none)
	require.NoError(t, err)
	led := &ledger.Ledger{Path: filepath.Join(e.dir, "root", "gpu-ledger.json")}
	require.NoError(t, led.Claim([]string{e.inv.GPUs[5].UUID}, ledger.Holder{Kind: ledger.HolderPod, ID: "gone", Since: time.Now()}))
	require.NoError(t, e.stop(t))
	e.start(t)
	claims, err := led.Read()
	require.NoError(t, err)
	assert.NotContains(t, claims.Devices, e.inv.GPUs[5].UUID, "the claim of a container that does not exist is dropped")
	assert.Equal(t, b, claims.Devices[mig6[0].UUID].ID)
	assert.Equal(t, id, claims.Devices[e.inv.GPUs[2].UUID].ID)
	assert.Len(t, claims.Devices, 4)
}

func TestGPUDriverFiles(t *testing.T) {
	e := newGPUEnv(t)
	cfg := e.podConfig("drv", nil)
	pod := e.runPod(t, cfg)
	gpu := e.inv.GPUs[3].UUID

	_, err := e.createGPU(pod, cfg, "x", "true", []string{"3"}, nil)
	assertCode(t, err, codes.FailedPrecondition, "needs the NVIDIA driver files: there is no Enroot NVIDIA hook")

	// A CDI spec for the GPU: its edits (environment, a driver library mount) are applied.
	lib := filepath.Join(e.gpuDir, "libcuda.so.1")
	require.NoError(t, os.WriteFile(lib, []byte("fake libcuda\n"), 0o644))
	spec := fmt.Sprintf(`{"cdiVersion":"0.6.0","kind":"nvidia.com/gpu",
 "devices":[{"name":%q,"containerEdits":{"env":["CDI_GPU=3"]}}],
 "containerEdits":{"env":["NVIDIA_CDI=yes"],"mounts":[{"hostPath":%q,"containerPath":"/usr/lib/libcuda.so.1","options":["ro","nosuid","nodev","bind"]}]}}`, gpu, lib)
	require.NoError(t, os.WriteFile(filepath.Join(e.gpuDir, "cdi", "nvidia.json"), []byte(spec), 0o644))
	id, err := e.createGPU(pod, cfg, "cdi", `echo "$CDI_GPU $NVIDIA_CDI $NVIDIA_VISIBLE_DEVICES"; cat /usr/lib/libcuda.so.1`, []string{"3"}, nil)
	require.NoError(t, err)
	assert.Equal(t, "3 yes "+gpu+"\nfake libcuda", e.runToExit(t, id))

	// A pod's environment asks for no GPU: a pod author can set NVIDIA_VISIBLE_DEVICES.
	id, err = e.create2(pod, cfg, "env", `ls /dev/nvidia4 2>&1; echo "env=$NVIDIA_VISIBLE_DEVICES"`, nil,
		[]*runtimeapi.KeyValue{{Key: "NVIDIA_VISIBLE_DEVICES", Value: []byte("4")}})
	require.NoError(t, err)
	assert.Contains(t, e.runToExit(t, id), "No such file or directory", "no GPU from the environment")

	// The node's Enroot NVIDIA hook, when there is one, gets the devices instead, from
	// the binding, never from the pod's environment (a pod without GPUs gets void).
	hooks := filepath.Join(e.site, "hooks.d")
	require.NoError(t, os.MkdirAll(hooks, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(hooks, "98-nvidia.sh"),
		[]byte("#!/bin/sh\necho \"hook saw $NVIDIA_VISIBLE_DEVICES\" > \"$ENROOT_ROOTFS/nvidia-hook\"\n"), 0o755))
	require.NoError(t, os.Remove(filepath.Join(e.gpuDir, "cdi", "nvidia.json")))
	ecfg := e.podConfig("drv-enroot", nil)
	epod := e.runPodWith(t, ecfg, "enroot")
	id, err = e.createGPU(epod, ecfg, "hook", `cat /nvidia-hook; echo "cdi=$NVIDIA_CDI"`, []string{e.inv.GPUs[4].UUID}, nil)
	require.NoError(t, err)
	assert.Equal(t, "hook saw "+e.inv.GPUs[4].UUID+"\ncdi=", e.runToExit(t, id))
	id, err = e.create2(epod, ecfg, "nogpu", `cat /nvidia-hook`, nil, []*runtimeapi.KeyValue{{Key: "NVIDIA_VISIBLE_DEVICES", Value: []byte("all")}})
	require.NoError(t, err)
	assert.Equal(t, "hook saw void", e.runToExit(t, id))
}

// fakeKubelet is the kubelet's device plugin registration service on a socket.
type fakeKubelet struct {
	pluginapi.UnimplementedRegistrationServer
	registered chan *pluginapi.RegisterRequest
}

func (k *fakeKubelet) Register(_ context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	k.registered <- r
	return &pluginapi.Empty{}, nil
}

func TestGPUDevicePlugin(t *testing.T) {
	plugins, err := os.MkdirTemp("", "device-plugins-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(plugins) })
	l, err := net.Listen("unix", filepath.Join(plugins, "kubelet.sock"))
	require.NoError(t, err)
	kubelet := &fakeKubelet{registered: make(chan *pluginapi.RegisterRequest, 10)}
	srv := grpc.NewServer()
	pluginapi.RegisterRegistrationServer(srv, kubelet)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	e := newGPUEnvWith(t, "", fmt.Sprintf("device_plugin = true\ndevice_plugin_dir = %q\n", plugins))

	endpoints := map[string]string{}
	for len(endpoints) < 4 {
		select {
		case r := <-kubelet.registered:
			assert.Equal(t, pluginapi.Version, r.Version)
			endpoints[r.ResourceName] = r.Endpoint
		case <-time.After(30 * time.Second):
			t.Fatalf("registered only %v", endpoints)
		}
	}
	assert.Contains(t, endpoints, "nvidia.com/gpu")
	assert.Contains(t, endpoints, "nvidia.com/mig-1g.5gb")
	assert.Contains(t, endpoints, "nvidia.com/mig-3g.20gb")
	assert.Contains(t, endpoints, "nvidia.com/mig-4g.20gb")

	conn, err := grpc.NewClient("unix://"+filepath.Join(plugins, endpoints["nvidia.com/gpu"]), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := pluginapi.NewDevicePluginClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.ListAndWatch(ctx, &pluginapi.Empty{})
	require.NoError(t, err)
	health := func() map[string]string {
		resp, err := stream.Recv()
		require.NoError(t, err)
		out := map[string]string{}
		for _, d := range resp.Devices {
			out[d.ID] = d.Health
		}
		return out
	}
	first := health()
	assert.Len(t, first, 6, "the whole GPUs")
	assert.Equal(t, pluginapi.Healthy, first[e.inv.GPUs[1].UUID])

	// A Slurm job takes GPU 1: the kubelet hears it is unhealthy, and healthy again after.
	job := []string{"SLURM_JOB_ID=9", "SLURM_JOB_GPUS=1"}
	out, err := e.cli(t, job, "slurm", "prolog")
	require.NoError(t, err, out)
	assert.Equal(t, pluginapi.Unhealthy, health()[e.inv.GPUs[1].UUID])
	out, err = e.cli(t, job, "slurm", "epilog")
	require.NoError(t, err, out)
	assert.Equal(t, pluginapi.Healthy, health()[e.inv.GPUs[1].UUID])

	slice := e.inv.GPUs[6].Slices[2].UUID
	mconn, err := grpc.NewClient("unix://"+filepath.Join(plugins, endpoints["nvidia.com/mig-1g.5gb"]), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer mconn.Close()
	alloc, err := pluginapi.NewDevicePluginClient(mconn).Allocate(context.Background(), &pluginapi.AllocateRequest{
		ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{slice}}}})
	require.NoError(t, err)
	require.Len(t, alloc.ContainerResponses, 1)
	assert.Equal(t, "nvidia.com/gpu="+slice, alloc.ContainerResponses[0].CdiDevices[0].Name, "the runtime binds it by its CDI name")
	assert.Equal(t, slice, alloc.ContainerResponses[0].Envs["NVIDIA_VISIBLE_DEVICES"])
}
