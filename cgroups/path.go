package cgroups

import (
	"fmt"
	"path"
	"strings"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// Driver is how cgroup parents are named, as the kubelet's cgroupDriver.
type Driver string

// The two cgroup drivers the kubelet uses.
const (
	Cgroupfs Driver = "cgroupfs"
	Systemd  Driver = "systemd"
)

// DefaultParent holds containers whose pod names no cgroup parent; it belongs to
// enroot-cri, which removes it when empty.
const DefaultParent = "/enroot-cri"

// ContainerPath is the cgroup path of container id under parent, the cgroup_parent the
// kubelet sends ("/kubepods/burstable/pod<uid>" for cgroupfs,
// "kubepods-burstable-pod<uid>.slice" for systemd).
func ContainerPath(driver Driver, parent, id string) (string, error) {
	switch driver {
	case Systemd:
		if parent == "" {
			return path.Join(DefaultParent, id), nil
		}
		dir, err := ExpandSlice(parent)
		if err != nil {
			return "", err
		}
		return path.Join(dir, "enroot-cri-"+id+".scope"), nil
	default:
		if parent == "" {
			parent = DefaultParent
		}
		if !path.IsAbs(parent) {
			return "", fmt.Errorf("cgroup_parent %q must be an absolute cgroupfs path with the cgroupfs driver: %w",
				parent, errdefs.ErrInvalidArgument)
		}
		return path.Join(path.Clean(parent), id), nil
	}
}

// ExpandSlice turns a systemd slice name into its cgroup path:
// "kubepods-burstable-pod1.slice" is "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice".
func ExpandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || strings.Contains(slice, "/") || name == "" {
		return "", fmt.Errorf("cgroup_parent %q must be a systemd slice name (NAME.slice) with the systemd driver: %w",
			slice, errdefs.ErrInvalidArgument)
	}
	if name == "-" {
		return "/", nil
	}
	var out, prefix string
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "", fmt.Errorf("cgroup_parent %q has an empty part between dashes: %w", slice, errdefs.ErrInvalidArgument)
		}
		out += "/" + prefix + part + ".slice"
		prefix += part + "-"
	}
	return out, nil
}
