package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Enroot's own configuration as its package installs it (enroot.conf, every stock hook
// and fstab, the extra ones a site copies in) runs pods unchanged under a handler of
// kind enroot.
func TestStockEnrootConfigurationRunsPods(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("pods need root")
	}
	inst := buildEnroot(t)
	hostUser(t, "ecri-test", testUID)
	e := newPodEnvWith(t, fmt.Sprintf("[enroot]\nconfig_dir = %q\nlibrary_path = %q\n", inst.ConfigDir(), inst.Lib()))
	cfg := e.podConfig("stock", nil)
	pod := e.runPodWith(t, cfg, "enroot")
	for _, uid := range []int64{testUID, 0} {
		out, code := e.runWith(t, pod, cfg, fmt.Sprintf("u%d", uid), &runtimeapi.LinuxContainerSecurityContext{
			RunAsUser: &runtimeapi.Int64Value{Value: uid}},
			`id; grep -E "^(ecri-test|root|nobody):" /etc/passwd; stat -c 'group=%U:%a' /etc/group; grep -c ecri-test /etc/group; ls /sys/fs/cgroup | head -3; echo HOME=$HOME`)
		require.Equal(t, int32(0), code, out)
		if uid == testUID {
			assert.Contains(t, out, "uid=5001(ecri-test) gid=5001(ecri-test)", "10-shadow adds the user's entries")
			assert.Contains(t, out, "ecri-test:x:5001:5001::/home/ecri-test:/bin/sh")
			assert.Contains(t, out, "group=ecri-test:600\n1\n", "/etc/group is the user's, as under Enroot (10-shadow writes it as the user)")
			assert.Contains(t, out, "HOME=/home/ecri-test")
		}
	}
}

// parityProbe prints what docs/parity.md compares, one "row: value" per line; it runs
// as a Slurm step under pyxis and as a pod's container under both kinds of handler.
const parityProbe = `row() { printf '%s: %s\n' "$1" "$2"; }
row "uid_map" "$(tr -s ' ' < /proc/self/uid_map | sed 's/^ //')"
row "gid_map" "$(tr -s ' ' < /proc/self/gid_map | sed 's/^ //')"
row "setgroups" "$(cat /proc/self/setgroups)"
row "id" "$(id)"
for k in CapEff CapPrm CapBnd CapAmb NoNewPrivs Seccomp; do row "$k" "$(grep "^$k:" /proc/self/status | cut -f2)"; done
for v in HOME USER LOGNAME SHELL PATH; do row "env $v" "$(eval echo "\${$v}")"; done
row "cwd" "$(pwd)"
touch /.parity-probe 2>/dev/null && row "root filesystem" "writable" || row "root filesystem" "read-only"
row "passwd entry" "$(grep "^$(id -un):" /etc/passwd)"
row "group entry" "$(grep "^$(id -gn):" /etc/group | cut -d: -f1,3)"
row "/etc/passwd owner" "$(stat -c '%U %a' /etc/passwd)"
for m in /proc /sys /dev /dev/shm /dev/pts /tmp /etc/hosts /sys/fs/cgroup; do
  row "mount $m" "$(awk -v m=$m '$5 == m {t = $(NF-2); o = $6} END {print t, (o ~ /^ro/ ? "ro" : "rw")}' /proc/self/mountinfo)"
done
row "cgroup path" "$(cut -d: -f3 /proc/self/cgroup | sort -u | tr '\n' ' ')"
row "memory limit" "$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
row "cpus" "$(cat /sys/fs/cgroup/cpuset/cpuset.cpus 2>/dev/null || cat /sys/fs/cgroup/cpuset.cpus.effective)"
row "devices" "$(ls /dev | wc -l) entries"
row "pid" "$( [ $$ -lt 10 ] && echo 'own namespace' || echo 'the host namespace')"
row "network" "$(ls /sys/class/net | tr '\n' ' ')"
row "hostname" "$(hostname)"
`

// parityDifferences are the rows where a pod of an Enroot handler differs from a Slurm
// step, and why (docs/parity.md); every other row must be equal.
var parityDifferences = map[string]string{
	"pid":        "a pod's containers have their own PID namespace (the kubelet's model); Enroot's stays the host's",
	"network":    "a pod has its own network namespace, with the pod's CNI address",
	"hostname":   "a pod has its own UTS namespace and the pod's hostname",
	"mount /dev": "a container gets the CRI's minimal /dev (its devices bound), not the host's /dev that 10-system.fstab binds",
	"devices":    "a container gets the CRI's minimal /dev (its devices bound), not the host's /dev that 10-system.fstab binds",
	"CapBnd":     "a pod's container is its own first process, set up as enroot-switchroot sets up `enroot start`'s (empty bounding set for a user); pyxis's tasks join the container's namespaces and keep a full bounding set, which grants a user with no capabilities nothing",
	"NoNewPrivs": "a pod's container is its own first process, set up as enroot-switchroot sets up `enroot start`'s (no_new_privs); pyxis's tasks join the container's namespaces without it",
}

// TestEnrootParity runs the same probe as a real Slurm step (slurmd on 127.0.0.1,
// pyxis and Enroot built from their sources) and as pods under both kinds of handler,
// with the same image, user, cgroup.conf and request, and prints docs/parity.md's
// table. A row of the enroot handler that differs from the step without a reason in
// parityDifferences fails it; UPDATE_DOCS=1 rewrites docs/parity.md.
func TestEnrootParity(t *testing.T) {
	if os.Getenv("ENROOT_CRI_SLURM_PARITY") == "" {
		t.Skip("run by make test-slurm-parity (it installs slurmd, slurmctld and munge)")
	}
	needCgroupV1(t)
	needTools(t, "munged", "slurmctld", "slurmd", "srun", "setpriv")
	inst := buildEnroot(t)
	pyxis := buildPyxis(t)
	hostUser(t, "ecri-test", testUID)
	const cgroupConf = "CgroupPlugin=cgroup/v1\nConstrainCores=yes\nConstrainRAMSpace=yes\n"

	// The pod side, with the node's Enroot configuration as installed.
	e := newPodEnvSlurm(t, fmt.Sprintf("[enroot]\nconfig_dir = %q\nlibrary_path = %q\n", inst.ConfigDir(), inst.Lib()), cgroupConf)
	pods := map[string]map[string]string{}
	for _, handler := range []string{"enroot", "kubernetes"} {
		pods[handler] = e.parityPod(t, handler)
	}

	// The Slurm side: the same image file, as the job's user.
	share := siteDir(t)
	sqsh := filepath.Join(share, "image.sqsh")
	img, err := e.images.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: e.image}, Verbose: true})
	require.NoError(t, err)
	var info struct {
		Squashfs string `json:"squashfs"`
	}
	require.NoError(t, jsonUnmarshal(img.Info["info"], &info))
	copyFile(t, info.Squashfs, sqsh, 0o644)
	runtimeDir := filepath.Join(share, "pyxis")
	require.NoError(t, os.MkdirAll(runtimeDir, 0o755))
	plugstack := filepath.Join(share, "plugstack.conf")
	require.NoError(t, os.WriteFile(plugstack, []byte(fmt.Sprintf("required %s runtime_path=%s\n", pyxis, runtimeDir)), 0o644))
	writeFiles(t, inst.ConfigDir(), map[string]string{"enroot.conf.d/50-parity.conf": "ENROOT_RUNTIME_PATH ${HOME}/.enroot-runtime\n"})
	cluster := startSlurm(t, "PlugStackConfig="+plugstack+"\n", "")
	path := inst.Bin() + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	cluster.env = []string{"PATH=" + path}
	cluster.restart(t, cgroupConf)
	step := cluster.parityStep(t, sqsh, path)

	table, failures := parityTable(step, pods)
	fmt.Println(table)
	for _, f := range failures {
		t.Error(f)
	}
	if os.Getenv("UPDATE_DOCS") != "" {
		require.NoError(t, os.WriteFile("../docs/parity.md", []byte(parityDoc(table)), 0o644))
	}
	doc, err := os.ReadFile("../docs/parity.md")
	require.NoError(t, err)
	assert.Contains(t, string(doc), table, "docs/parity.md is stale: UPDATE_DOCS=1 make test-slurm-parity")
}

// parityPod runs the probe in a pod of handler as the test user with 512 MiB and 1 CPU.
func (e *podEnv) parityPod(t *testing.T, handler string) map[string]string {
	t.Helper()
	cfg := e.podConfig("parity-"+handler, nil)
	pod := e.runPodWith(t, cfg, handler)
	id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "probe"}, Image: &runtimeapi.ImageSpec{Image: e.image},
		Command: []string{"/bin/sh", "-c", parityProbe}, LogPath: "probe.log",
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 512 << 20, CpuQuota: 100000, CpuPeriod: 100000},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: testUID},
				RunAsGroup: &runtimeapi.Int64Value{Value: testUID}}},
	})
	_, err := e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	require.NoError(t, err)
	st := e.waitExited(t, id)
	out := strings.Join(lines(e.crictl(t, "logs", id)), "\n")
	require.Equal(t, int32(0), st.ExitCode, out)
	return parseRows(out)
}

// parityStep runs the probe as `srun --container-image` of the test user.
func (c *slurmCluster) parityStep(t *testing.T, sqsh, path string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", "--reuid="+strconv.Itoa(testUID), "--regid="+strconv.Itoa(testUID), "--init-groups",
		"srun", "--mem=512M", "-c1", "-N1", "-n1", "--container-image="+sqsh, "sh", "-c", parityProbe)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + path, "HOME=/home/ecri-test", "USER=ecri-test", "LOGNAME=ecri-test", "SHELL=/bin/sh", "SLURM_CONF=" + c.conf}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "srun --container-image: %s\n%s", out, c.logs())
	rows := parseRows(string(out))
	// What is the host's differs from machine to machine: the table names it.
	host, _ := os.Hostname()
	for row, hostish := range map[string]bool{"network": rows["network"] != "eth0 lo" && rows["network"] != "lo",
		"devices": strings.HasPrefix(rows["mount /dev"], "devtmpfs"), "hostname": rows["hostname"] == host} {
		if hostish {
			rows[row] = "the host's"
		}
	}
	return rows
}

func parseRows(out string) map[string]string {
	rows := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			rows[k] = strings.TrimSpace(v)
		}
	}
	return rows
}

// parityRows are the probe's rows in order.
func parityRows() []string {
	var out []string
	for _, l := range strings.Split(parityProbe, "\n") {
		switch {
		case strings.HasPrefix(l, "row \""):
			out = append(out, strings.Split(l, "\"")[1])
		case strings.HasPrefix(l, "for k in"):
			out = append(out, strings.Fields(strings.TrimSuffix(strings.Split(l, ";")[0], "; do"))[3:]...)
		case strings.HasPrefix(l, "for v in"):
			for _, v := range strings.Fields(strings.Split(l, ";")[0])[3:] {
				out = append(out, "env "+v)
			}
		case strings.HasPrefix(l, "for m in"):
			for _, m := range strings.Fields(strings.Split(l, ";")[0])[3:] {
				out = append(out, "mount "+m)
			}
		}
	}
	return out
}

// parityTable renders the rows side by side and lists the unexplained differences.
func parityTable(step map[string]string, pods map[string]map[string]string) (string, []string) {
	var b strings.Builder
	var failures []string
	b.WriteString("| | Slurm step (srun --container-image, pyxis 0.24, Enroot 4.1.2) | handler `enroot` | handler `kubernetes` | why `enroot` differs |\n|---|---|---|---|---|\n")
	cell := func(s string) string {
		s = strings.ReplaceAll(s, "|", `\|`)
		if s == "" {
			return "(none)"
		}
		return "`" + s + "`"
	}
	for _, row := range parityRows() {
		why := ""
		if step[row] != pods["enroot"][row] {
			why = parityDifferences[row]
			if why == "" {
				failures = append(failures, fmt.Sprintf("%s: Slurm step %q, enroot handler %q, and no documented reason", row, step[row], pods["enroot"][row]))
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", row, cell(step[row]), cell(pods["enroot"][row]), cell(pods["kubernetes"][row]), why)
	}
	return b.String(), failures
}

func parityDoc(table string) string {
	return `# Parity: a pod of the enroot handler and a Slurm job step under pyxis

Generated by ` + "`UPDATE_DOCS=1 make test-slurm-parity`" + ` (TestEnrootParity): the same probe
(tests/parity_test.go) runs as ` + "`srun --mem=512M -c1 --container-image=IMAGE.sqsh`" + ` of user
ecri-test (uid 5001) under a real slurmd with pyxis and Enroot built from their release
sources, and as a pod's container of the same user with the same image file, 512 MiB and
one CPU, under the ` + "`enroot`" + ` handler (the node's Enroot configuration as Enroot installs it,
every stock and extra hook) and the ` + "`kubernetes`" + ` handler, with the same cgroup.conf
(ConstrainCores, ConstrainRAMSpace). A row of the enroot handler that differs from the
step without a reason below fails the test.

` + table + `
The Kubernetes handler's column is what containerd and runc would give the same pod; it
is not compared.

## Beyond the probe

What a pod of the enroot handler must do differently from a job step, besides the rows
above, and why:

- **Who the pod is.** A job's user is its submitter; a pod's is its ` + "`runAsUser`" + ` (or
  ` + "`runAsUserName`" + `), which must be an account of the node at or above ` + "`min_uid`" + `. The image's
  USER is ignored, as Enroot ignores it. A pod running as root is root of its user
  namespace only, mapped to ` + "`remap_root_uid`" + ` (nobody): a pod is never host root, where
  ` + "`enroot start`" + ` by root (with ` + "`ENROOT_ALLOW_SUPERUSER`" + `) would be.
- **The caller's environment.** Enroot's hooks get the caller's environment; a pod has no
  caller, so its hooks get the node's: Enroot's settings with its defaults, the user's
  HOME, USER, LOGNAME and SHELL from the host's user database, a host PATH with Enroot's
  helpers, and ` + "`NVIDIA_VISIBLE_DEVICES`" + ` from the runtime's GPU binding (` + "`void`" + ` without one).
  The pod's own variables reach the container (after environ.d, as ` + "`--env`" + ` does) and the
  hooks through ` + "`$ENROOT_ENVIRON`" + `. A pod may not set ` + "`ENROOT_*`" + `.
- **The host's tree.** Hooks see the host's files read-only in the container's mount
  namespace, so nothing a hook does through an image's symlinks writes to the host.
- **The kubelet's mounts.** Volumes, the pod's hosts, resolv.conf and hostname files, and
  the container's log are the kubelet's, mounted after mounts.d and the hooks.
- **The user's configuration.** ` + "`$ENROOT_CONFIG_PATH`" + ` (the user's own hooks.d, mounts.d,
  environ.d) is not read: the node administrator decides a pod's configuration.
- **Namespaces.** A pod has its own PID, network, IPC and UTS namespaces (the rows pid,
  network, hostname); a shared PID namespace (` + "`shareProcessNamespace`" + `) is not available to
  pods of the enroot handler, whose containers each have their own user namespace.
`
}
