package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/cri/network"
	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/mig"
)

// Status of a check.
type Status string

// A failed check stops pods from running; a warning limits what they can do.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "FAIL"
)

// Result is one check: what was found and, unless it is OK, what to do.
type Result struct {
	Status Status
	Name   string
	Detail string
	Fix    string
}

// Host holds the host paths the checks read; tests point them at temporary trees.
type Host struct {
	Proc, Sys, Dev string
	// KubeletConfigs are files that may hold the kubelet's runtime endpoint.
	KubeletConfigs []string
}

// DefaultHost is the real node.
func DefaultHost() Host {
	return Host{Proc: "/proc", Sys: "/sys", Dev: "/dev", KubeletConfigs: []string{
		"/var/lib/kubelet/config.yaml", "/etc/kubernetes/kubelet.conf", "/etc/default/kubelet", "/etc/sysconfig/kubelet",
		"/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", "/var/lib/kubelet/kubeadm-flags.env",
	}}
}

// Run runs every check.
func Run(ctx context.Context, cfg config.Config, h Host) []Result {
	var out []Result
	add := func(r Result) { out = append(out, r) }
	fs, _ := os.ReadFile(filepath.Join(h.Proc, "filesystems"))
	add(check("kernel: overlay filesystem", strings.Contains(string(fs), "\toverlay\n"), Fail,
		"overlay is available", "overlay is not in /proc/filesystems", "modprobe overlay (and add it to /etc/modules-load.d)"))
	add(check("kernel: squashfs", strings.Contains(string(fs), "\tsquashfs\n") || onPath("squashfuse"), Fail,
		"squashfs images mount", "neither the squashfs filesystem nor squashfuse is available", "modprobe squashfs, or install squashfuse"))
	add(check("kernel: loop devices", exists(filepath.Join(h.Dev, "loop-control")), Fail,
		"/dev/loop-control is present", "/dev/loop-control is missing", "modprobe loop"))
	userns := readInt(filepath.Join(h.Proc, "sys/user/max_user_namespaces"))
	add(check("kernel: user namespaces", userns > 0, Warn,
		fmt.Sprintf("max_user_namespaces = %d", userns), "user namespaces are disabled (max_user_namespaces = 0)",
		"sysctl -w user.max_user_namespaces=15000 (needed for pods with user namespaces)"))
	status, _ := os.ReadFile(filepath.Join(h.Proc, "self/status"))
	add(check("kernel: seccomp", strings.Contains(string(status), "\nSeccomp:"), Fail,
		"seccomp filters are supported", "the kernel has no seccomp", "use a kernel built with CONFIG_SECCOMP_FILTER"))
	add(cgroupCheck(h))
	for _, tool := range []string{"mksquashfs", "unsquashfs"} {
		add(check("tools: "+tool, onPath(tool), Fail, tool+" is on PATH", tool+" is not installed", "apt-get install squashfs-tools (or dnf install squashfs-tools)"))
	}
	add(monitorCheck())
	add(enrootCheck(cfg))
	add(slurmCheck(cfg))
	add(cniCheck(cfg))
	add(gpuCheck(ctx, cfg, h))
	add(socketCheck(cfg))
	add(kubeletCheck(cfg, h))
	return out
}

// monitorCheck finds the small per-container monitor binary the daemon starts.
func monitorCheck() Result {
	exe, err := os.Executable()
	shim := ""
	if err == nil {
		shim = container.FindShim(exe)
	}
	return check("tools: enroot-cri-shim", shim != "", Warn, "containers are monitored by "+shim,
		"enroot-cri-shim is neither beside enroot-cri nor in /usr/libexec/enroot-cri: each container's monitor is the whole daemon binary (about 3x the memory)",
		"install the package, or run make build (bin/enroot-cri-shim)")
}

// Print writes one line per check and returns whether the node can run pods.
func Print(w io.Writer, results []Result) bool {
	ok := true
	for _, r := range results {
		fmt.Fprintf(w, "%-4s  %-28s %s\n", r.Status, r.Name, r.Detail)
		if r.Status != OK && r.Fix != "" {
			fmt.Fprintf(w, "      %-28s fix: %s\n", "", r.Fix)
		}
		ok = ok && r.Status != Fail
	}
	return ok
}

func check(name string, good bool, bad Status, okDetail, badDetail, fix string) Result {
	if good {
		return Result{Status: OK, Name: name, Detail: okDetail}
	}
	return Result{Status: bad, Name: name, Detail: badDetail, Fix: fix}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func onPath(tool string) bool { _, err := exec.LookPath(tool); return err == nil }

func readInt(p string) int {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	var n int
	_, _ = fmt.Sscan(strings.TrimSpace(string(data)), &n)
	return n
}

func cgroupCheck(h Host) Result {
	root := filepath.Join(h.Sys, "fs/cgroup")
	if data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		have := strings.Fields(string(data))
		var missing []string
		for _, c := range []string{"cpu", "cpuset", "memory", "pids"} {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return Result{Status: Fail, Name: "cgroups", Detail: "cgroup v2 without " + strings.Join(missing, ", "),
				Fix: "enable the controllers (kernel command line, or systemd's DefaultXXXAccounting)"}
		}
		return Result{Status: OK, Name: "cgroups", Detail: "cgroup v2 (" + strings.Join(have, " ") + "); devices through eBPF"}
	}
	var missing []string
	for _, c := range []string{"cpu", "cpuset", "memory", "pids", "devices", "freezer"} {
		if !exists(filepath.Join(root, c)) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return Result{Status: Fail, Name: "cgroups", Detail: "cgroup v1 without " + strings.Join(missing, ", "),
			Fix: "mount the missing controllers under /sys/fs/cgroup, or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"}
	}
	return Result{Status: OK, Name: "cgroups", Detail: "cgroup v1 (cpu cpuset memory pids devices freezer)"}
}

func enrootCheck(cfg config.Config) Result {
	dir := cfg.Enroot.ConfigDir
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return Result{Status: Warn, Name: "enroot configuration", Detail: dir + " does not exist: Enroot's built-in defaults apply",
			Fix: "install enroot (its /etc/enroot holds the site's hooks and mounts), or set [enroot] config_dir"}
	}
	if _, err := enroot.LoadSettings(dir, os.Environ()); err != nil {
		return Result{Status: Fail, Name: "enroot configuration", Detail: err.Error(), Fix: "fix the file named above"}
	}
	hooks, _ := filepath.Glob(filepath.Join(dir, "hooks.d", "*.sh"))
	mounts, _ := filepath.Glob(filepath.Join(dir, "mounts.d", "*.fstab"))
	return Result{Status: OK, Name: "enroot configuration", Detail: fmt.Sprintf("%s: %d hooks, %d mount files", dir, len(hooks), len(mounts))}
}

func slurmCheck(cfg config.Config) Result {
	c, err := cgroups.ReadSlurmConf(cfg.Cgroups.SlurmCgroupConf)
	if err != nil {
		return Result{Status: Fail, Name: "slurm cgroup.conf", Detail: err.Error(), Fix: "fix the line named above (enroot-cri reads it as slurmd does)"}
	}
	if err := c.CheckPlugin(); err != nil {
		return Result{Status: Fail, Name: "slurm cgroup.conf", Detail: err.Error()}
	}
	if c.Path == "" {
		return Result{Status: OK, Name: "slurm cgroup.conf", Detail: cfg.Cgroups.SlurmCgroupConf + " is absent: Slurm's defaults"}
	}
	return Result{Status: OK, Name: "slurm cgroup.conf", Detail: fmt.Sprintf("%s: ConstrainRAMSpace=%v ConstrainCores=%v ConstrainSwapSpace=%v",
		c.Path, yesNo(c.ConstrainRAMSpace), yesNo(c.ConstrainCores), yesNo(c.ConstrainSwapSpace))}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func cniCheck(cfg config.Config) Result {
	m := &network.Manager{ConfDir: cfg.CNI.ConfDir, BinDirs: cfg.CNI.BinDirs}
	name, types, err := m.Check()
	if err != nil {
		return Result{Status: Fail, Name: "cni", Detail: err.Error(),
			Fix: "install containernetworking-plugins and copy /usr/share/enroot-cri/10-enroot-cri.conflist to " + cfg.CNI.ConfDir}
	}
	return Result{Status: OK, Name: "cni", Detail: fmt.Sprintf("network %q (%s)", name, strings.Join(types, ", "))}
}

func gpuCheck(ctx context.Context, cfg config.Config, h Host) Result {
	inv := mig.ReadInventory(ctx, cfg.NVMLHelperPath())
	if inv.Unavailable != "" {
		return Result{Status: Warn, Name: "gpus", Detail: "no GPUs: " + inv.Unavailable,
			Fix: "on a GPU node: install the NVIDIA driver (libnvidia-ml.so.1) and enroot-cri-nvml"}
	}
	slices := 0
	for _, g := range inv.GPUs {
		slices += len(g.Slices)
	}
	if slices > 0 {
		if _, err := os.Stat(cfg.GPUs.MigMinors); err != nil {
			return Result{Status: Fail, Name: "gpus", Detail: fmt.Sprintf("%d MIG slices but %s is unreadable", slices, cfg.GPUs.MigMinors),
				Fix: "load nvidia-caps (nvidia-modprobe -f /proc/driver/nvidia-caps/mig-minors)"}
		}
	}
	return Result{Status: OK, Name: "gpus", Detail: fmt.Sprintf("%d GPUs, %d MIG slices, driver %s", len(inv.GPUs), slices, inv.Driver)}
}

func socketCheck(cfg config.Config) Result {
	dir := filepath.Dir(cfg.Socket)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return Result{Status: Fail, Name: "socket", Detail: err.Error(), Fix: "run as root, or set socket to a writable place"}
	}
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return Result{Status: Fail, Name: "socket", Detail: dir + " is not writable: " + err.Error(), Fix: "run as root, or set socket to a writable place"}
	}
	f.Close()
	os.Remove(f.Name())
	return Result{Status: OK, Name: "socket", Detail: cfg.Socket + " can be created"}
}

var endpoint = regexp.MustCompile(`(?:containerRuntimeEndpoint:\s*|--container-runtime-endpoint[= ])"?([^"\s]+)`)

func kubeletCheck(cfg config.Config, h Host) Result {
	want := "unix://" + cfg.Socket
	for _, p := range h.KubeletConfigs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		m := endpoint.FindStringSubmatch(string(data))
		if m == nil {
			continue
		}
		if got := m[1]; got != want && got != cfg.Socket {
			return Result{Status: Warn, Name: "kubelet", Detail: fmt.Sprintf("%s points the kubelet at %s", p, got),
				Fix: "set containerRuntimeEndpoint: " + want + " (see /usr/share/enroot-cri/kubelet-config.yaml)"}
		}
		return Result{Status: OK, Name: "kubelet", Detail: fmt.Sprintf("%s uses %s", p, want)}
	}
	return Result{Status: Warn, Name: "kubelet", Detail: "no kubelet configuration found",
		Fix: "point the kubelet at " + want + " (containerRuntimeEndpoint, see /usr/share/enroot-cri/kubelet-config.yaml)"}
}
