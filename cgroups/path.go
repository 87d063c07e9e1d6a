package cgroups

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
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

// ViewDir is one directory of a container's view of its own cgroup at /sys/fs/cgroup:
// Name under /sys/fs/cgroup (empty on cgroup v2: the view is the cgroup itself), the
// host directory it shows, or a symlink to a sibling (v1's cpu -> cpu,cpuacct); with
// neither, an empty directory.
type ViewDir struct {
	Name   string `json:"name"`
	Source string `json:"source,omitempty"`
	Link   string `json:"link,omitempty"`
}

// View lists what a container whose cgroup is path sees at /sys/fs/cgroup, as runc
// shows it: on v1 each controller hierarchy's directory of the container, on v2 the
// container's cgroup directory.
func View(path string) []ViewDir {
	if unified() {
		return []ViewDir{{Source: filepath.Join(Root, path)}}
	}
	entries, _ := os.ReadDir(Root)
	var out []ViewDir
	for _, e := range entries {
		name := e.Name()
		full := filepath.Join(Root, name)
		if e.Type()&os.ModeSymlink != 0 {
			if target, err := os.Readlink(full); err == nil && !strings.Contains(target, "/") {
				out = append(out, ViewDir{Name: name, Link: target})
			}
			continue
		}
		if !e.IsDir() {
			continue
		}
		if dir := filepath.Join(full, path); isDir(dir) {
			out = append(out, ViewDir{Name: name, Source: dir})
		} else if name == "unified" {
			out = append(out, ViewDir{Name: name}) // hybrid: an empty directory, as a mount point
		}
	}
	return out
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
