package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/errdefs"
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

// environment is the container's base environment: defaults, then the image's (the
// Enroot environ.d files and the CRI's follow, in containerConfig); a later value of a
// name replaces an earlier one in place.
func environment(img *image.Image, hostname string, home string) []string {
	env := enroot.MergeEnv([]string{defaultPathEnv, "HOSTNAME=" + hostname}, img.Env)
	if _, ok := enroot.Lookup(env, "HOME"); !ok {
		env = append(env, "HOME="+home)
	}
	return env
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

// containerConfig is the engine's configuration for a CRI container.
func (s *Server) containerConfig(id string, pod *podRecord, cfg *runtimeapi.ContainerConfig, img *image.Image,
	root string, user identity, volumes []specs.Mount) (*container.Config, error) {
	mounts, err := criMounts(cfg)
	if err != nil {
		return nil, err
	}
	mounts = append(mounts, volumes...)
	devices, err := criDevices(cfg)
	if err != nil {
		return nil, err
	}
	args := command(cfg, img)
	if len(args) == 0 {
		return nil, fmt.Errorf("config.command is empty and image %s has no entrypoint or cmd: %w", img.ID, errdefs.ErrInvalidArgument)
	}
	cwd := cfg.GetWorkingDir()
	if cwd == "" {
		cwd = img.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	hostname, _ := os.ReadFile(filepath.Join(pod.Sandbox.Dir, "hostname"))
	oom := int(cfg.GetLinux().GetResources().GetOomScoreAdj())
	groups := make([]uint32, len(user.Groups))
	for i, g := range user.Groups {
		groups[i] = uint32(g)
	}
	spec := specs.Spec{
		Process: &specs.Process{
			Terminal: cfg.GetTty(), Args: args, Cwd: cwd, OOMScoreAdj: &oom,
			Env:  environment(img, strings.TrimSpace(string(hostname)), user.Home),
			User: specs.User{UID: uint32(user.UID), GID: uint32(user.GID), AdditionalGids: groups},
		},
		Root:   &specs.Root{Path: root, Readonly: cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs()},
		Mounts: append(append(container.DefaultMounts(pod.Sandbox.Shm), podMounts(pod, cfg)...), mounts...),
		Linux: &specs.Linux{
			Namespaces: namespaces(pod, cfg),
			Devices:    append(container.DefaultDevices(), devices...),
		},
	}
	if err := s.applySecurity(&spec, pod, cfg); err != nil {
		return nil, err
	}
	uids, gids, remap, err := s.containerUserns(pod)
	if err != nil {
		return nil, err
	}
	if uids != nil {
		if cfg.GetLinux().GetSecurityContext().GetPrivileged() {
			return nil, fmt.Errorf("linux.security_context.privileged: a privileged container cannot run in a pod with its own user namespace: %w", errdefs.ErrInvalidArgument)
		}
		applyUserns(&spec, uids, gids)
	}
	if remap {
		// Only root is mapped: the container runs as root, as under enroot start --root.
		if user.UID != 0 || user.GID != 0 {
			return nil, fmt.Errorf("linux.security_context: runtime handler %q remaps root (remap_root), so containers run as root only, not as %d:%d: %w",
				pod.Handler, user.UID, user.GID, errdefs.ErrInvalidArgument)
		}
		spec.Process.User = specs.User{}
	}
	logPath := ""
	if dir, rel := pod.config.GetLogDirectory(), cfg.GetLogPath(); dir != "" && rel != "" {
		logPath = filepath.Join(dir, rel)
	}
	ec, err := s.enrootConfig(pod.Handler)
	if err != nil {
		return nil, err
	}
	environ, err := enroot.Environ(ec.Dir, func(k string) (string, bool) {
		if v, ok := enroot.Lookup(spec.Process.Env, k); ok {
			return v, true
		}
		return os.LookupEnv(k)
	})
	if err != nil {
		return nil, err
	}
	spec.Process.Env = enroot.MergeEnv(enroot.MergeEnv(spec.Process.Env, environ), criEnv(cfg))
	shared := false
	for _, m := range cfg.GetMounts() {
		shared = shared || m.GetPropagation() == runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
	}
	out := &container.Config{ID: id, Spec: spec, LogPath: logPath, Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(),
		Volumes: img.Volumes, Enroot: ec, SharedRoot: shared, RemapRoot: remap}
	for _, d := range cfg.GetDevices() {
		if d.GetContainerPath() != "" {
			deviceSource(out, d.GetContainerPath(), d.GetHostPath())
		}
	}
	return out, nil
}

// enrootConfig is the node's Enroot configuration for a handler's containers.
func (s *Server) enrootConfig(handler string) (*container.EnrootConfig, error) {
	dir := s.cfg.EnrootDir(handler)
	settings, err := enroot.LoadSettings(dir, os.Environ())
	if err != nil {
		return nil, err
	}
	return &container.EnrootConfig{Dir: dir, Settings: settings.Env(), Hooks: !s.cfg.Runtimes[handler].DisableHooks, RCLocal: true}, nil
}

func criEnv(cfg *runtimeapi.ContainerConfig) []string {
	var out []string
	for _, kv := range cfg.GetEnvs() {
		out = append(out, kv.GetKey()+"="+string(kv.GetValue()))
	}
	return out
}
