package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/cpulist"
	"github.com/enroot-cri/enroot-cri/internal/hostdev"
)

// defaultPathEnv is the PATH a container gets when neither its image nor its spec
// sets one.
const defaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// command merges the CRI command and args with the image's entrypoint and cmd, as
// Kubernetes defines it.
func command(cfg *runtimeapi.ContainerConfig, img *image.Image) []string {
	switch {
	case len(cfg.GetCommand()) > 0:
		return append(append([]string{}, cfg.GetCommand()...), cfg.GetArgs()...)
	case len(cfg.GetArgs()) > 0:
		return append(append([]string{}, img.Entrypoint...), cfg.GetArgs()...)
	default:
		return append(append([]string{}, img.Entrypoint...), img.Cmd...)
	}
}

// podMounts are /etc/hosts, /etc/resolv.conf and /etc/hostname from the pod, unless
// the container mounts its own.
func podMounts(pod *podRecord, cfg *runtimeapi.ContainerConfig) []specs.Mount {
	taken := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		taken[filepath.Clean(m.GetContainerPath())] = true
	}
	var out []specs.Mount
	for _, name := range []string{"hosts", "resolv.conf", "hostname"} {
		dest := "/etc/" + name
		if taken[dest] {
			continue
		}
		opts := []string{"rbind", "rprivate", "rw"}
		if cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs() {
			opts[2] = "ro"
		}
		out = append(out, specs.Mount{Destination: dest, Type: "bind", Source: filepath.Join(pod.Sandbox.Dir, name), Options: opts})
	}
	return out
}

// criMounts turns the CRI mounts into bind mounts with their propagation.
func criMounts(cfg *runtimeapi.ContainerConfig) ([]specs.Mount, error) {
	var out []specs.Mount
	for i, m := range cfg.GetMounts() {
		if m.GetImage().GetImage() != "" {
			continue // an image volume: see imageVolumes
		}
		if !filepath.IsAbs(m.GetContainerPath()) {
			return nil, fmt.Errorf("config.mounts[%d].container_path %q must be absolute: %w", i, m.GetContainerPath(), errdefs.ErrInvalidArgument)
		}
		src := m.GetHostPath()
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("config.mounts[%d].host_path %q: %w", i, src, errdefs.WithKind(err, errdefs.ErrInvalidArgument))
		}
		opts := []string{"rbind"}
		if m.GetRecursiveReadOnly() {
			if !m.GetReadonly() || m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, fmt.Errorf("config.mounts[%d].recursive_read_only needs readonly and private propagation: %w", i, errdefs.ErrInvalidArgument)
			}
			opts = append(opts, "rro")
		}
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			opts = append(opts, "rshared")
		default:
			opts = append(opts, "rprivate")
		}
		if m.GetReadonly() {
			opts = append(opts, "ro")
		}
		out = append(out, specs.Mount{Destination: m.GetContainerPath(), Type: "bind", Source: src, Options: opts})
	}
	return out, nil
}

// criDevices turns the CRI devices into device nodes.
func criDevices(cfg *runtimeapi.ContainerConfig) ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	for i, d := range cfg.GetDevices() {
		dev, err := hostdev.Stat(d.GetHostPath())
		if errors.Is(err, hostdev.ErrNotDevice) {
			return nil, fmt.Errorf("config.devices[%d].host_path %q is not a device node: %w", i, d.GetHostPath(), errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return nil, fmt.Errorf("config.devices[%d].host_path %q: %w", i, d.GetHostPath(), errdefs.WithKind(err, errdefs.ErrInvalidArgument))
		}
		if p := d.GetContainerPath(); p != "" {
			dev.Path = p
		}
		out = append(out, dev)
	}
	return out, nil
}

// namespaces lists the container's namespaces: the pod's network, IPC and UTS, a new
// mount namespace, and a PID namespace by the pod's option.
func namespaces(pod *podRecord, cfg *runtimeapi.ContainerConfig) []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	for t, p := range map[specs.LinuxNamespaceType]string{
		specs.NetworkNamespace: pod.Sandbox.NetNS, specs.IPCNamespace: pod.Sandbox.IPCNS, specs.UTSNamespace: pod.Sandbox.UTSNS,
	} {
		if p != "" {
			ns = append(ns, specs.LinuxNamespace{Type: t, Path: p})
		}
	}
	pidMode := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid()
	switch {
	case pidMode == runtimeapi.NamespaceMode_NODE:
	case pidMode == runtimeapi.NamespaceMode_POD && pod.Sandbox.PIDNS != "":
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: pod.Sandbox.PIDNS})
	default:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	return ns
}

// validateResources checks what the kubelet sends for a container's cgroup.
func validateResources(field string, r *runtimeapi.LinuxContainerResources) error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%s.%s: %s: %w", field, key, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	switch {
	case r == nil:
		return nil
	case r.GetCpuShares() < 0:
		return bad("cpu_shares", "%d is negative", r.GetCpuShares())
	case r.GetCpuPeriod() < 0 || (r.GetCpuPeriod() > 0 && (r.GetCpuPeriod() < 1000 || r.GetCpuPeriod() > 1000000)):
		return bad("cpu_period", "%d is out of range; allowed: 0 (unset) or 1000 to 1000000 microseconds", r.GetCpuPeriod())
	case r.GetCpuQuota() < -1 || (r.GetCpuQuota() > 0 && r.GetCpuQuota() < 1000):
		return bad("cpu_quota", "%d is out of range; allowed: -1 or 0 (no quota) or 1000 microseconds and more", r.GetCpuQuota())
	case r.GetMemoryLimitInBytes() < 0:
		return bad("memory_limit_in_bytes", "%d is negative", r.GetMemoryLimitInBytes())
	case r.GetMemorySwapLimitInBytes() < -1:
		return bad("memory_swap_limit_in_bytes", "%d is out of range; allowed: -1 (no limit), 0 (unset) or more", r.GetMemorySwapLimitInBytes())
	case r.GetOomScoreAdj() < -1000 || r.GetOomScoreAdj() > 1000:
		return bad("oom_score_adj", "%d is out of range; allowed: -1000 to 1000", r.GetOomScoreAdj())
	}
	for name, list := range map[string]string{"cpuset_cpus": r.GetCpusetCpus(), "cpuset_mems": r.GetCpusetMems()} {
		if _, err := cpulist.Parse(list); list != "" && err != nil {
			return bad(name, "%q is not a CPU list such as \"0-3,7\": %v", list, err)
		}
	}
	return nil
}

// cgroupView is what a container shows of its cgroup at /sys/fs/cgroup.
func cgroupView(path string) []container.CgroupDir {
	var out []container.CgroupDir
	for _, d := range cgroups.View(path) {
		out = append(out, container.CgroupDir{Name: d.Name, Source: d.Source, Link: d.Link})
	}
	return out
}

// resources turns the CRI's container resources into cgroup settings.
func resources(r *runtimeapi.LinuxContainerResources) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if r == nil {
		return out
	}
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := uint64(r.GetCpuShares()); v > 0 {
		cpu.Shares = &v
	}
	if v := r.GetCpuQuota(); v > 0 {
		cpu.Quota = &v
	}
	if v := uint64(r.GetCpuPeriod()); v > 0 {
		cpu.Period = &v
	}
	out.CPU = cpu
	if v := r.GetMemoryLimitInBytes(); v > 0 {
		out.Memory = &specs.LinuxMemory{Limit: &v}
	}
	return out
}

// containerConfig is the engine's configuration for a CRI container and the identity
// it runs with, by the kind of the pod's handler.
func (s *Server) containerConfig(ctx context.Context, id string, pod *podRecord, cfg *runtimeapi.ContainerConfig, img *image.Image,
	root string, volumes []specs.Mount) (*container.Config, identity, error) {
	mounts, err := criMounts(cfg)
	if err != nil {
		return nil, identity{}, err
	}
	mounts = append(mounts, volumes...)
	devices, err := criDevices(cfg)
	if err != nil {
		return nil, identity{}, err
	}
	args := command(cfg, img)
	if len(args) == 0 {
		return nil, identity{}, fmt.Errorf("config.command is empty and image %s has no entrypoint or cmd: %w", img.ID, errdefs.ErrInvalidArgument)
	}
	cwd := cfg.GetWorkingDir()
	if cwd == "" {
		cwd = img.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	oom := int(cfg.GetLinux().GetResources().GetOomScoreAdj())
	spec := specs.Spec{
		Process: &specs.Process{Terminal: cfg.GetTty(), Args: args, Cwd: cwd, OOMScoreAdj: &oom},
		Root:    &specs.Root{Path: root, Readonly: cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs()},
		Mounts:  append(append(container.DefaultMounts(pod.Sandbox.Shm), podMounts(pod, cfg)...), mounts...),
		Linux: &specs.Linux{
			Namespaces: append(namespaces(pod, cfg), specs.LinuxNamespace{Type: specs.CgroupNamespace}),
			Devices:    append(container.DefaultDevices(), devices...),
		},
	}
	logPath := ""
	if dir, rel := pod.config.GetLogDirectory(), cfg.GetLogPath(); dir != "" && rel != "" {
		logPath = filepath.Join(dir, rel)
	}
	shared := false
	for _, m := range cfg.GetMounts() {
		shared = shared || m.GetPropagation() == runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
	}
	out := &container.Config{ID: id, Spec: spec, LogPath: logPath, Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), SharedRoot: shared}
	for _, d := range cfg.GetDevices() {
		if d.GetContainerPath() != "" {
			deviceSource(out, d.GetContainerPath(), d.GetHostPath())
		}
	}
	hostname, _ := os.ReadFile(filepath.Join(pod.Sandbox.Dir, "hostname"))
	base := enroot.MergeEnv([]string{defaultPathEnv, "HOSTNAME=" + strings.TrimSpace(string(hostname))}, img.Env)
	var user identity
	if s.cfg.Runtimes[pod.Handler].IsEnroot() {
		user, err = s.enrootContainer(ctx, out, pod, cfg, img, root, base)
	} else {
		user, err = s.kubernetesContainer(out, pod, cfg, img, root, base)
	}
	if err != nil {
		return nil, identity{}, err
	}
	return out, user, nil
}

// kubernetesContainer gives a container of a handler of kind kubernetes what
// containerd and runc give it: the image's user resolved in its own /etc/passwd, the
// security context as asked, the image's volumes as directories.
func (s *Server) kubernetesContainer(out *container.Config, pod *podRecord, cfg *runtimeapi.ContainerConfig, img *image.Image,
	root string, base []string) (identity, error) {
	user, err := s.criUser(cfg, img, root)
	if err != nil {
		return identity{}, err
	}
	spec := &out.Spec
	spec.Process.User = specUser(user)
	spec.Process.Env = base
	if _, ok := enroot.Lookup(base, "HOME"); !ok {
		spec.Process.Env = append(spec.Process.Env, "HOME="+user.Home)
	}
	spec.Process.Env = enroot.MergeEnv(spec.Process.Env, criEnv(cfg))
	if err := s.applySecurity(spec, pod, cfg); err != nil {
		return identity{}, err
	}
	uids, gids, err := podUserns(pod.config)
	if err != nil {
		return identity{}, err
	}
	if uids != nil {
		if cfg.GetLinux().GetSecurityContext().GetPrivileged() {
			return identity{}, fmt.Errorf("linux.security_context.privileged: a privileged container cannot run in a pod with its own user namespace: %w", errdefs.ErrInvalidArgument)
		}
		applyUserns(spec, uids, gids)
	}
	out.Volumes = img.Volumes
	return user, nil
}

// criUser resolves the container's user as containerd does.
func (s *Server) criUser(cfg *runtimeapi.ContainerConfig, img *image.Image, root string) (identity, error) {
	sc := cfg.GetLinux().GetSecurityContext()
	return resolveUser(userRequest{
		UID: optional(sc.GetRunAsUser()), GID: optional(sc.GetRunAsGroup()), Username: sc.GetRunAsUsername(),
		Supplemental: sc.GetSupplementalGroups(), ImageUser: img.User, imageRoot: root,
		Strict: sc.GetSupplementalGroupsPolicy() == runtimeapi.SupplementalGroupsPolicy_Strict,
	})
}

func specUser(user identity) specs.User {
	groups := make([]uint32, len(user.Groups))
	for i, g := range user.Groups {
		groups[i] = uint32(g)
	}
	return specs.User{UID: uint32(user.UID), GID: uint32(user.GID), AdditionalGids: groups}
}

func criEnv(cfg *runtimeapi.ContainerConfig) []string {
	var out []string
	for _, kv := range cfg.GetEnvs() {
		out = append(out, kv.GetKey()+"="+string(kv.GetValue()))
	}
	return out
}
