package server

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// podUserns reads a pod's user namespace option: nil mappings for the host's (mode
// NODE, or no option), one UID and one GID mapping that maps container ID 0 for mode
// POD. The kubelet sends the same mappings for every container of the pod.
func podUserns(cfg *runtimeapi.PodSandboxConfig) (uids, gids []specs.LinuxIDMapping, err error) {
	u := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions()
	const field = "config.linux.security_context.namespace_options.userns_options"
	if u == nil {
		return nil, nil, nil // unset: the host's (its mode's zero value would read as POD)
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		return nil, nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, nil, fmt.Errorf("%s.mode %s is not supported; allowed: NODE (the host's user namespace) or POD: %w",
			field, u.GetMode(), errdefs.ErrInvalidArgument)
	}
	conv := func(name string, in []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
		if len(in) != 1 {
			return nil, fmt.Errorf("%s.%s: exactly one mapping is supported, got %d: %w", field, name, len(in), errdefs.ErrInvalidArgument)
		}
		m := in[0]
		switch {
		case m.GetContainerId() != 0:
			return nil, fmt.Errorf("%s.%s[0]: container ID 0 must be mapped (container_id is %d): %w", field, name, m.GetContainerId(), errdefs.ErrInvalidArgument)
		case m.GetLength() == 0:
			return nil, fmt.Errorf("%s.%s[0].length is 0: %w", field, name, errdefs.ErrInvalidArgument)
		case m.GetHostId() == 0:
			return nil, fmt.Errorf("%s.%s[0].host_id 0 would make the container's root the host's: %w", field, name, errdefs.ErrInvalidArgument)
		case uint64(m.GetHostId())+uint64(m.GetLength()) > 1<<32-1:
			return nil, fmt.Errorf("%s.%s[0]: host_id+length passes 2^32-1: %w", field, name, errdefs.ErrInvalidArgument)
		}
		return []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.GetHostId(), Size: m.GetLength()}}, nil
	}
	if uids, err = conv("uids", u.GetUids()); err != nil {
		return nil, nil, err
	}
	if gids, err = conv("gids", u.GetGids()); err != nil {
		return nil, nil, err
	}
	return uids, gids, nil
}

// applyUserns puts a container of a pod with its own user namespace into one with the
// pod's mappings. Inside it the container cannot mount sysfs or mqueue of namespaces
// the host owns, nor make device nodes: /sys is the host's bound read-only, /dev/mqueue
// is left out, and device nodes are bound from the host.
func applyUserns(spec *specs.Spec, uids, gids []specs.LinuxIDMapping) {
	spec.Linux.UIDMappings, spec.Linux.GIDMappings = uids, gids
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	spec.Mounts = container.UsernsMounts(spec.Mounts)
	// devpts gives new terminals the tty group (5); where that is not mapped (a
	// remapped root maps only 0) it cannot.
	if g := gids[0]; g.ContainerID+g.Size <= 5 {
		for i, m := range spec.Mounts {
			if m.Type == "devpts" {
				spec.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return strings.HasPrefix(o, "gid=") })
			}
		}
	}
}
