package server

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/ledger"
	"github.com/enroot-cri/enroot-cri/mig"
)

// Annotations for runtime-side GPU allocation on nodes without a device plugin, and
// for containers that bring their own driver files.
const (
	AnnotationMIGProfile = "gpus.enroot-cri.io/mig-profile" // e.g. 1g.10gb; "gpu" for whole GPUs
	AnnotationGPUCount   = "gpus.enroot-cri.io/count"       // how many; default 1
	AnnotationGPUDriver  = "gpus.enroot-cri.io/driver"      // "none": inject no driver files
)

const gpuKind = "nvidia.com/gpu"

// gpuNames are the GPUs a container names: CDI devices of kind nvidia.com/gpu (the
// kubelet's CDIDevices and the cdi.k8s.io/* annotations), else, where the node accepts
// them (gpus.accept_env_requests), the NVIDIA_VISIBLE_DEVICES the NVIDIA device
// plugin's envvar strategy sets: a pod author can set that variable too.
func gpuNames(cfg *runtimeapi.ContainerConfig, acceptEnv bool) []string {
	var cdiNames []string
	for _, d := range cfg.GetCDIDevices() {
		cdiNames = append(cdiNames, d.GetName())
	}
	for k, v := range cfg.GetAnnotations() {
		if strings.HasPrefix(k, "cdi.k8s.io/") {
			cdiNames = append(cdiNames, strings.Split(v, ",")...)
		}
	}
	var names []string
	for _, n := range cdiNames {
		if kind, dev, ok := strings.Cut(strings.TrimSpace(n), "="); ok && kind == gpuKind {
			names = append(names, dev)
		}
	}
	if len(names) > 0 || !acceptEnv {
		return names
	}
	for _, kv := range cfg.GetEnvs() {
		if kv.GetKey() == "NVIDIA_VISIBLE_DEVICES" {
			return strings.Split(string(kv.GetValue()), ",")
		}
	}
	return nil
}

// gpuBinding claims the GPUs or MIG slices a container asks for in the node ledger
// and returns their binding; nil when it asks for none. A device another holder has
// is FailedPrecondition naming the holder. The claim is undone with the create.
func (s *Server) gpuBinding(u *undo, id string, pod *podRecord, cfg *runtimeapi.ContainerConfig) (*mig.Binding, error) {
	md := pod.config.GetMetadata()
	holder := ledger.Holder{Kind: ledger.HolderPod, ID: id, Since: time.Now(),
		Name: md.GetNamespace() + "/" + md.GetName() + "/" + cfg.GetMetadata().GetName()}
	var devs []mig.Device
	annotations := cfg.GetAnnotations()
	profile, allocate := annotations[AnnotationMIGProfile]
	if !allocate {
		profile, allocate = pod.config.GetAnnotations()[AnnotationMIGProfile]
	}
	switch {
	case allocate:
		n := 1
		if v, ok := annotations[AnnotationGPUCount]; ok {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 {
				return nil, fmt.Errorf("annotation %s: %q is not a count of 1 or more: %w", AnnotationGPUCount, v, errdefs.ErrInvalidArgument)
			}
		}
		var candidates []string
		byUUID := map[string]mig.Device{}
		for _, d := range s.gpus.Units() {
			if (profile == "gpu" && d.Slice == nil) || (d.Slice != nil && d.Slice.Profile == profile) {
				candidates = append(candidates, d.UUID)
				byUUID[d.UUID] = d
			}
		}
		if len(candidates) == 0 {
			return nil, fmt.Errorf("annotation %s: no %q on this node (%s): %w", AnnotationMIGProfile, profile, s.profiles(), errdefs.ErrInvalidArgument)
		}
		got, err := s.ledger.Allocate(candidates, n, holder)
		if err != nil {
			return nil, fmt.Errorf("allocate %d %s: %w", n, profile, errdefs.WithKind(err, errdefs.ErrFailedPrecondition))
		}
		for _, uuid := range got {
			devs = append(devs, byUUID[uuid])
		}
	default:
		names := gpuNames(cfg, s.cfg.GPUs.AcceptEnvRequests)
		if len(names) == 0 {
			return nil, nil
		}
		var err error
		if devs, err = s.gpus.Lookup(names); err != nil {
			if s.gpus.Unavailable != "" {
				err = fmt.Errorf("%w (no GPUs: %s)", err, s.gpus.Unavailable)
			}
			return nil, errdefs.WithKind(err, errdefs.ErrInvalidArgument)
		}
		if len(devs) == 0 {
			return nil, nil
		}
		var uuids []string
		for _, d := range devs {
			uuids = append(uuids, d.UUID)
		}
		if err := s.ledger.Claim(uuids, holder); err != nil {
			var held *ledger.HeldError
			if errors.As(err, &held) {
				return nil, errdefs.WithKind(err, errdefs.ErrFailedPrecondition)
			}
			return nil, err
		}
	}
	u.push(func() error { _, err := s.ledger.Release(ledger.HolderPod, id); return err })
	b, err := mig.Bind(devs, mig.Host{DevRoot: s.cfg.GPUs.DevRoot, CapMinors: s.cfg.GPUs.MigMinors})
	if err != nil {
		return nil, errdefs.WithKind(err, errdefs.ErrFailedPrecondition)
	}
	return &b, nil
}

// profiles lists the MIG profiles and whole GPUs this node has, for error messages.
func (s *Server) profiles() string {
	var out []string
	for _, d := range s.gpus.Units() {
		p := "gpu"
		if d.Slice != nil {
			p = d.Slice.Profile
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return "it has no GPUs"
	}
	return "it has " + strings.Join(out, ", ")
}

// applyGPUBinding adds a binding to a container: its device nodes (and through them
// the cgroup device rules), the environment, and the driver files: the Enroot NVIDIA
// hook does that when the Enroot configuration has one, else the CDI specs of
// nvidia.com/gpu are injected.
func (s *Server) applyGPUBinding(ccfg *container.Config, b *mig.Binding, cfg *runtimeapi.ContainerConfig) error {
	spec, ec := &ccfg.Spec, ccfg.Enroot
	for _, n := range b.Nodes {
		mode := n.Mode
		spec.Linux.Devices = append(spec.Linux.Devices, specs.LinuxDevice{Path: n.Path, Type: "c", Major: n.Major, Minor: n.Minor, FileMode: &mode})
		deviceSource(ccfg, n.Path, n.HostPath)
	}
	spec.Process.Env = enroot.MergeEnv(spec.Process.Env, b.Env)
	if ec != nil {
		// The NVIDIA hook takes the GPUs from its own environment first.
		ec.HookEnv = enroot.MergeEnv(ec.HookEnv, b.Env)
	}
	if cfg.GetAnnotations()[AnnotationGPUDriver] == "none" {
		return nil
	}
	if ec != nil && ec.Hooks && enroot.HasHook(ec.Dir, "nvidia") {
		return nil
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(s.cfg.GPUs.CDISpecDirs...), cdi.WithAutoRefresh(false))
	if err != nil {
		return fmt.Errorf("read CDI specs in %s: %w", strings.Join(s.cfg.GPUs.CDISpecDirs, ", "), err)
	}
	var names []string
	for _, uuid := range b.UUIDs {
		name := gpuKind + "=" + uuid
		if cache.GetDevice(name) == nil {
			return fmt.Errorf("GPU %s needs the NVIDIA driver files: there is no Enroot NVIDIA hook in %s and no CDI device %s in %s "+
				"(generate one with nvidia-ctk cdi generate, or annotate %s: none): %w",
				uuid, filepath.Join(s.enrootDirOf(ec), "hooks.d"), name, strings.Join(s.cfg.GPUs.CDISpecDirs, ", "),
				AnnotationGPUDriver, errdefs.ErrFailedPrecondition)
		}
		names = append(names, name)
	}
	if _, err := cache.InjectDevices(spec, names...); err != nil {
		return fmt.Errorf("inject CDI devices %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

func (s *Server) enrootDirOf(ec *container.EnrootConfig) string {
	if ec == nil {
		return s.cfg.Enroot.ConfigDir
	}
	return ec.Dir
}

// deviceSource records the host node of a device whose container path differs.
func deviceSource(ccfg *container.Config, path, host string) {
	if path == host {
		return
	}
	if ccfg.DeviceSources == nil {
		ccfg.DeviceSources = map[string]string{}
	}
	ccfg.DeviceSources[path] = host
}
