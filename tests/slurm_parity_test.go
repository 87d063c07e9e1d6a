package tests

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/cpulist"
	"github.com/enroot-cri/enroot-cri/ledger"
)

// slurmCluster is munged, slurmctld and one slurmd on 127.0.0.1 with their own ports,
// key, spool and state under a scratch directory.
type slurmCluster struct {
	dir, conf, node string
	slurmd          *exec.Cmd
	env             []string // more environment for slurmd (and so for its steps' plugins)
}

// confinement is what one cgroup gives a step or a container.
type confinement struct {
	Hard, Soft, MemSw string // bytes, as the memory cgroup files read
	CPUs              int    // CPUs in the cpuset
	Devices           string // devices.list, one rule per line
}

const unlimited = "9223372036854771712" // an unset cgroup v1 memory limit

// The deliberate differences, each documented in docs/cgroups.md.
const (
	// Slurm's defaults (ConstrainRAMSpace=no) set no memory limit; a container keeps the
	// kubelet's limit, which Kubernetes always enforces.
	deliberateKubeLimit = "kubelet's limit kept"
	// Since Slurm 21.08 ConstrainDevices only denies unallocated GRES devices, so a step
	// without GPUs may open every device; a container is deny-by-default.
	deliberateDevices = "containers deny by default"
)

func TestSlurmParity(t *testing.T) {
	if os.Getenv("ENROOT_CRI_SLURM_PARITY") == "" {
		t.Skip("run by make test-slurm-parity (it installs slurmd, slurmctld and munge)")
	}
	needCgroupV1(t)
	needTools(t, "munged", "slurmctld", "slurmd", "srun")
	cluster := startSlurm(t, "", "")

	cases := []struct {
		name, conf string
		memMiB     int
		cpus       int
		deliberate map[string]string // field → why it differs (devices always do)
	}{
		{name: "Slurm defaults", conf: "", memMiB: 100, cpus: 1, deliberate: map[string]string{"hard": deliberateKubeLimit}},
		{name: "AllowedRAMSpace=100", conf: "ConstrainRAMSpace=yes\nAllowedRAMSpace=100\n", memMiB: 100, cpus: 1},
		{name: "AllowedRAMSpace=120", conf: "ConstrainRAMSpace=yes\nAllowedRAMSpace=120\n", memMiB: 100, cpus: 1},
		{name: "MinRAMSpace=200", conf: "ConstrainRAMSpace=yes\nMinRAMSpace=200\n", memMiB: 100, cpus: 1},
		{name: "MaxRAMPercent=1", conf: "ConstrainRAMSpace=yes\nMaxRAMPercent=1\n", memMiB: 1000, cpus: 1},
		{name: "swap 20 percent", conf: "ConstrainRAMSpace=yes\nConstrainSwapSpace=yes\nAllowedSwapSpace=20\n", memMiB: 100, cpus: 1},
		{name: "swap only", conf: "ConstrainSwapSpace=yes\nAllowedSwapSpace=10\n", memMiB: 300, cpus: 1},
		{name: "ConstrainCores 1 CPU", conf: "ConstrainCores=yes\nConstrainRAMSpace=yes\n", memMiB: 64, cpus: 1},
		{name: "ConstrainCores 2 CPUs", conf: "ConstrainCores=yes\nConstrainRAMSpace=yes\n", memMiB: 64, cpus: 2},
		{name: "ConstrainDevices", conf: "ConstrainDevices=yes\nConstrainRAMSpace=yes\n", memMiB: 100, cpus: 1},
	}
	var table []string
	notes := map[string]bool{}
	row := func(cols ...string) {
		table = append(table, fmt.Sprintf("%-22s %-8s %-10s %-10s %-10s %-10s %-5s %s", anys(cols)...))
	}
	row("cgroup.conf", "request", "who", "mem hard", "mem soft", "memsw", "cpus", "devices")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conf := "CgroupPlugin=cgroup/v1\n" + tc.conf
			cluster.restart(t, conf)
			step := cluster.step(t, tc.memMiB, tc.cpus)
			pod := podConfinement(t, conf, tc.memMiB, tc.cpus)
			request := fmt.Sprintf("%dM/%dc", tc.memMiB, tc.cpus)
			row(tc.name, request, "slurmd", mib(step.Hard), mib(step.Soft), mib(step.MemSw), strconv.Itoa(step.CPUs), summary(step.Devices))
			row("", "", "enroot-cri", mib(pod.Hard), mib(pod.Soft), mib(pod.MemSw), strconv.Itoa(pod.CPUs), summary(pod.Devices))
			for field, pair := range map[string][2]string{
				"hard": {step.Hard, pod.Hard}, "soft": {step.Soft, pod.Soft}, "memsw": {step.MemSw, pod.MemSw},
				"cpus": {strconv.Itoa(step.CPUs), strconv.Itoa(pod.CPUs)}, "devices": {summary(step.Devices), summary(pod.Devices)},
			} {
				why, ok := tc.deliberate[field]
				if field == "devices" {
					why, ok = deliberateDevices, true
				}
				if ok {
					assert.NotEqual(t, pair[0], pair[1], "%s is listed as a deliberate difference but is equal", field)
					notes[field+": "+why] = true
					continue
				}
				assert.Equal(t, pair[0], pair[1], "%s: slurmd vs enroot-cri", field)
			}
		})
	}
	fmt.Println("\nSlurm step (slurmd 22.05, task/cgroup) vs enroot-cri container, same cgroup.conf and request:")
	fmt.Println(strings.Join(table, "\n"))
	fmt.Println("Deliberate differences (docs/cgroups.md):")
	for _, n := range slices.Sorted(maps.Keys(notes)) {
		fmt.Println("  " + n)
	}
}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// mib shows a byte count in MiB where it is whole, "unlimited" for no limit.
func mib(v string) string {
	if v == unlimited {
		return "unlimited"
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err == nil && n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + "M"
	}
	return v
}

// summary names a devices.list: everything allowed, or deny-by-default with N rules.
func summary(list string) string {
	if strings.TrimSpace(list) == "a *:* rwm" {
		return "all allowed"
	}
	return fmt.Sprintf("deny-by-default (%d allowed)", len(strings.Fields(list))/3)
}

// podConfinement runs a container asking for memMiB and cpus under cgroup.conf and
// reads its cgroup.
func podConfinement(t *testing.T, conf string, memMiB, cpus int) confinement {
	t.Helper()
	e := newPodEnvSlurm(t, "", conf)
	cfg := e.podConfig("parity", nil)
	pod := e.runPod(t, cfg)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "step"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"sleep", "1000"},
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: int64(memMiB) << 20, CpuQuota: int64(cpus) * 100000, CpuPeriod: 100000}},
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	cpuset := e.cgroupFile(t, id, "cpuset", "cpuset.cpus")
	return confinement{
		Hard:    e.cgroupFile(t, id, "memory", "memory.limit_in_bytes"),
		Soft:    e.cgroupFile(t, id, "memory", "memory.soft_limit_in_bytes"),
		MemSw:   e.cgroupFile(t, id, "memory", "memory.memsw.limit_in_bytes"),
		CPUs:    countCPUs(t, cpuset),
		Devices: e.cgroupFile(t, id, "devices", "devices.list"),
	}
}

func countCPUs(t *testing.T, list string) int {
	t.Helper()
	cpus, err := cpulist.Parse(list)
	require.NoError(t, err)
	return len(cpus)
}

// stepScript prints the step's cgroup values; tasks sit in task_N below the step.
const stepScript = `step() { p=$(grep ":$1:" /proc/self/cgroup | cut -d: -f3); case $p in */task_*) p=${p%/*};; esac; echo /sys/fs/cgroup/$1$p; }
m=$(step memory); c=$(step cpuset); d=$(step devices)
echo "hard=$(cat $m/memory.limit_in_bytes)"
echo "soft=$(cat $m/memory.soft_limit_in_bytes)"
echo "memsw=$(cat $m/memory.memsw.limit_in_bytes)"
echo "cpus=$(cat $c/cpuset.cpus)"
echo "devices=$(cat $d/devices.list | tr '\n' ';')"`

func (c *slurmCluster) step(t *testing.T, memMiB, cpus int) confinement {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "srun", "--mem="+strconv.Itoa(memMiB), "-c", strconv.Itoa(cpus), "-N1", "-n1", "sh", "-c", stepScript)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+c.conf)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "srun: %s\n%s", out, c.logs())
	v := map[string]string{}
	for _, line := range lines(string(out)) {
		if k, val, ok := strings.Cut(line, "="); ok {
			v[k] = val
		}
	}
	return confinement{Hard: v["hard"], Soft: v["soft"], MemSw: v["memsw"], CPUs: countCPUs(t, v["cpus"]),
		Devices: strings.ReplaceAll(strings.TrimSuffix(v["devices"], ";"), ";", "\n")}
}

func (c *slurmCluster) logs() string {
	var b strings.Builder
	for _, f := range []string{"slurmctld.log", "slurmd.log"} {
		data, _ := os.ReadFile(filepath.Join(c.dir, f))
		lines := strings.Split(string(data), "\n")
		fmt.Fprintf(&b, "--- %s\n%s\n", f, strings.Join(lines[max(0, len(lines)-20):], "\n"))
	}
	return b.String()
}

// startSlurm starts munged and slurmctld; restart starts slurmd with a cgroup.conf.
// Everything, and every cgroup slurmd made, goes at the end of the test.
func startSlurm(t *testing.T, extraConf, gresConf string) *slurmCluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "slurm-parity-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o755))
	c := &slurmCluster{dir: dir, conf: filepath.Join(dir, "etc", "slurm.conf"), node: "ecri" + strconv.Itoa(os.Getpid()%1000)}
	for _, d := range []string{"etc", "munge", "ctld", "spool"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	key := make([]byte, 1024)
	f, err := os.Open("/dev/urandom")
	require.NoError(t, err)
	_, err = f.Read(key)
	f.Close()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "munge", "munge.key"), key, 0o400))

	var daemons []*exec.Cmd
	t.Cleanup(func() {
		for i := len(daemons) - 1; i >= 0; i-- {
			c.stopDaemon(daemons[i])
		}
		c.stopDaemon(c.slurmd)
		removeSlurmCgroups(c.node)
		os.RemoveAll(dir)
	})
	sock := filepath.Join(dir, "munge", "munge.sock")
	munged := exec.Command("munged", "-F", "-f", "-S", sock, "--key-file="+filepath.Join(dir, "munge", "munge.key"),
		"--pid-file="+filepath.Join(dir, "munge", "munged.pid"), "--log-file="+filepath.Join(dir, "munge", "munged.log"),
		"--seed-file="+filepath.Join(dir, "munge", "munged.seed"))
	require.NoError(t, munged.Start())
	daemons = append(daemons, munged)
	poll(t, func() bool { _, err := os.Stat(sock); return err == nil }, 10*time.Second, 50*time.Millisecond, "munged socket")

	host, err := os.Hostname()
	require.NoError(t, err)
	probe, err := exec.Command("slurmd", "-C").Output()
	require.NoError(t, err)
	hw := regexp.MustCompile(`CPUs=(\d+).*RealMemory=(\d+)`).FindStringSubmatch(string(probe))
	require.NotNil(t, hw, "slurmd -C: %s", probe)
	conf := fmt.Sprintf(`ClusterName=ecri
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=%d
SlurmdPort=%d
SlurmUser=root
SlurmdUser=root
StateSaveLocation=%[3]s/ctld
SlurmdSpoolDir=%[3]s/spool
SlurmctldPidFile=%[3]s/slurmctld.pid
SlurmdPidFile=%[3]s/slurmd.pid
SlurmctldLogFile=%[3]s/slurmctld.log
SlurmdLogFile=%[3]s/slurmd.log
AuthType=auth/munge
AuthInfo=socket=%[4]s
CredType=cred/munge
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup,task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
NodeName=%[5]s NodeHostname=%[6]s NodeAddr=127.0.0.1 CPUs=%[7]s RealMemory=%[8]s State=UNKNOWN
PartitionName=parity Nodes=ALL Default=YES MaxTime=INFINITE State=UP
`, freePort(t), freePort(t), dir, sock, c.node, host, hw[1], hw[2])
	if gresConf != "" {
		conf = strings.Replace(conf, "State=UNKNOWN\n", "State=UNKNOWN Gres="+gresOf(gresConf)+"\n", 1)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "etc", "gres.conf"), []byte(strings.ReplaceAll(gresConf, "NODE", c.node)), 0o644))
	}
	conf += extraConf
	require.NoError(t, os.WriteFile(c.conf, []byte(conf), 0o644))
	ctld := exec.Command("slurmctld", "-D", "-i", "-f", c.conf)
	ctld.Env = append(os.Environ(), "SLURM_CONF="+c.conf)
	require.NoError(t, ctld.Start())
	daemons = append(daemons, ctld)
	return c
}

// gresOf is the node's Gres= for a gres.conf with one "Name=gpu ... Count=N" line.
func gresOf(gresConf string) string {
	m := regexp.MustCompile(`Count=(\d+)`).FindStringSubmatch(gresConf)
	if m == nil {
		return "gpu:1"
	}
	return "gpu:" + m[1]
}

// restart (re)starts slurmd with cgroupConf and waits until the node is idle.
func (c *slurmCluster) restart(t *testing.T, cgroupConf string) {
	t.Helper()
	c.stopDaemon(c.slurmd)
	removeSlurmCgroups(c.node)
	require.NoError(t, os.WriteFile(filepath.Join(c.dir, "etc", "cgroup.conf"), []byte(cgroupConf), 0o644))
	c.slurmd = exec.Command("slurmd", "-D", "-N", c.node, "-f", c.conf)
	c.slurmd.Env = append(append(os.Environ(), "SLURM_CONF="+c.conf), c.env...)
	require.NoError(t, c.slurmd.Start())
	poll(t, func() bool {
		cmd := exec.Command("sinfo", "-h", "-n", c.node, "-o", "%t")
		cmd.Env = append(os.Environ(), "SLURM_CONF="+c.conf)
		out, _ := cmd.Output()
		return strings.TrimSpace(string(out)) == "idle"
	}, 60*time.Second, 200*time.Millisecond, "slurmd never became idle\n%s", c.logs())
}

func (c *slurmCluster) stopDaemon(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// removeSlurmCgroups removes the cgroup trees slurmd made for node, deepest first.
func removeSlurmCgroups(node string) { removeCgroupTree("slurm_" + node) }

// A real slurmd runs `enroot-cri slurm prolog` and `epilog` around a job that holds a
// GPU (a GRES over the fake /dev tree): while the job runs, the ledger shows its GPU
// and CPUs, a pod asking for that GPU is refused naming the job, and a pod that pins
// CPUs keeps off the job's; after the job, its claims are gone.
func TestSlurmPrologEpilog(t *testing.T) {
	if os.Getenv("ENROOT_CRI_SLURM_PARITY") == "" {
		t.Skip("run by make test-slurm-parity (it installs slurmd, slurmctld and munge)")
	}
	needCgroupV1(t)
	needTools(t, "munged", "slurmctld", "slurmd", "srun")
	e := newGPUEnvWith(t, "ConstrainCores=yes\nConstrainRAMSpace=yes\n", "")
	scripts := t.TempDir()
	require.NoError(t, os.Chmod(scripts, 0o755))
	dev := filepath.Join(e.gpuDir, "dev")
	cluster := startSlurm(t, fmt.Sprintf("GresTypes=gpu\nProlog=%[1]s/prolog.sh\nEpilog=%[1]s/epilog.sh\n", scripts),
		fmt.Sprintf("NodeName=NODE Name=gpu File=%s/nvidia[0-5] Count=6\n", dev))
	// The scripts a site puts in slurm.conf; SLURM_CONF because this cluster's
	// slurm.conf is not in the default place (scontrol reads it).
	for _, phase := range []string{"prolog", "epilog"} {
		script := fmt.Sprintf("#!/bin/sh\nexport SLURM_CONF=%s\nexec %s slurm %s --config %s >> %s/%s.log 2>&1\n",
			cluster.conf, enrootCRI, phase, e.config, scripts, phase)
		require.NoError(t, os.WriteFile(filepath.Join(scripts, phase+".sh"), []byte(script), 0o755))
	}
	cluster.restart(t, "CgroupPlugin=cgroup/v1\nConstrainCores=yes\nConstrainRAMSpace=yes\n")

	// A container that pins no CPUs, started before the job.
	cfg := e.podConfig("beside-slurm", nil)
	pod := e.runPod(t, cfg)
	free := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "free"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"sleep", "100"},
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: free})
	require.NoError(t, err)
	allCPUs := e.cgroupFile(t, free, "cpuset", "cpuset.cpus")

	srun := exec.Command("srun", "--gres=gpu:1", "-c", "1", "--mem=64", "sh", "-c", "sleep 8")
	srun.Env = append(os.Environ(), "SLURM_CONF="+cluster.conf)
	var srunOut strings.Builder
	srun.Stdout, srun.Stderr = &srunOut, &srunOut
	require.NoError(t, srun.Start())
	defer func() { _ = srun.Process.Kill(); _ = srun.Wait() }()
	led := &ledger.Ledger{Path: filepath.Join(e.dir, "root", "gpu-ledger.json")}
	var job string
	phaseLog := func(phase string) string {
		data, _ := os.ReadFile(filepath.Join(scripts, phase+".log"))
		return string(data)
	}
	ok := assert.Eventually(t, func() bool {
		c, err := led.Read()
		if err != nil {
			return false
		}
		for _, h := range c.Devices {
			if h.Kind == ledger.HolderSlurm {
				job = h.ID
			}
		}
		return job != "" && len(c.CPUs[job]) > 0
	}, 30*time.Second, 100*time.Millisecond, "the prolog never claimed the job's GPU and CPUs")
	if !ok {
		t.Fatalf("srun: %s\nprolog: %s\n%s", srunOut.String(), phaseLog("prolog"), cluster.logs())
	}
	claims, err := led.Read()
	require.NoError(t, err)
	assert.Equal(t, job, claims.Devices[e.inv.GPUs[0].UUID].ID, "SLURM_JOB_GPUS=0 is NVML's GPU 0")
	jobCPUs := claims.CPUs[job]
	require.Len(t, jobCPUs, 1)

	assert.Eventually(t, func() bool {
		return !strings.Contains(e.cgroupFile(t, free, "cpuset", "cpuset.cpus"), strconv.Itoa(jobCPUs[0]))
	}, 10*time.Second, 100*time.Millisecond, "a running container that pins no CPUs moves off the job's")
	_, err = e.createGPU(pod, cfg, "gpu0", "true", []string{"0"}, map[string]string{"gpus.enroot-cri.io/driver": "none"})
	assertCode(t, err, codes.FailedPrecondition, "is held by Slurm job "+job)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "pinned"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"sleep", "100"},
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: 64 << 20, CpuQuota: 100000, CpuPeriod: 100000}},
	})
	assert.NotEqual(t, strconv.Itoa(jobCPUs[0]), e.cgroupFile(t, id, "cpuset", "cpuset.cpus"), "a pod keeps off the job's CPUs")

	require.NoError(t, srun.Wait(), srunOut.String())
	poll(t, func() bool {
		c, err := led.Read()
		return err == nil && len(c.CPUs) == 0 && c.Devices[e.inv.GPUs[0].UUID].ID == ""
	}, 30*time.Second, 100*time.Millisecond, "the epilog did not release the job's claims")
	assert.Eventually(t, func() bool { return e.cgroupFile(t, free, "cpuset", "cpuset.cpus") == allCPUs },
		10*time.Second, 100*time.Millisecond, "and moves back when the job ends")
	fmt.Printf("\nslurmd ran the prolog:\n%sand the epilog:\n%s", phaseLog("prolog"), phaseLog("epilog"))
}
