package mig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/enroot-cri/enroot-cri/internal/hostdev"
)

// Host is where the node's device files are; tests point it at temporary trees.
type Host struct {
	DevRoot   string // /dev
	CapMinors string // /proc/driver/nvidia-caps/mig-minors
}

// DefaultHost is the real node.
func DefaultHost() Host {
	return Host{DevRoot: "/dev", CapMinors: "/proc/driver/nvidia-caps/mig-minors"}
}

// DeviceNode is a character device a container gets: Path inside the container, the
// host node's numbers and mode.
type DeviceNode struct {
	Path         string
	HostPath     string
	Major, Minor int64
	Mode         os.FileMode
}

// Binding is what a container bound to some GPUs or slices gets.
type Binding struct {
	UUIDs []string
	Nodes []DeviceNode
	Env   []string // NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES
}

// Bind computes the binding of devices: each parent /dev/nvidia<minor>, the control
// nodes (/dev/nvidiactl, and /dev/nvidia-uvm, /dev/nvidia-uvm-tools where the host has
// them), and for a slice its GPU-instance and compute-instance capability nodes. The
// environment names the UUIDs in order: CUDA uses the first unless told otherwise.
func Bind(devs []Device, host Host) (Binding, error) {
	var b Binding
	if len(devs) == 0 {
		return b, nil
	}
	seen := map[string]bool{}
	add := func(name string, required bool) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		n, err := hostNode(host.DevRoot, name)
		if errors.Is(err, os.ErrNotExist) && !required {
			return nil
		}
		if err != nil {
			return err
		}
		b.Nodes = append(b.Nodes, n)
		return nil
	}
	var minors CapMinors
	for _, d := range devs {
		b.UUIDs = append(b.UUIDs, d.UUID)
		if err := add(fmt.Sprintf("nvidia%d", d.Parent.Minor), true); err != nil {
			return Binding{}, err
		}
		if d.Slice == nil {
			continue
		}
		if minors == nil {
			data, err := os.ReadFile(host.CapMinors)
			if err != nil {
				return Binding{}, fmt.Errorf("MIG capability minors: %w", err)
			}
			if minors, err = ParseCapMinors(strings.NewReader(string(data))); err != nil {
				return Binding{}, err
			}
		}
		gi, ci, err := minors.Slice(d.Parent.Minor, d.Slice.GI, d.Slice.CI)
		if err != nil {
			return Binding{}, fmt.Errorf("MIG device %s: %w", d.UUID, err)
		}
		for _, m := range []int{gi, ci} {
			if err := add(fmt.Sprintf("nvidia-caps/nvidia-cap%d", m), true); err != nil {
				return Binding{}, err
			}
		}
	}
	for _, ctl := range []struct {
		name     string
		required bool
	}{{"nvidiactl", true}, {"nvidia-uvm", false}, {"nvidia-uvm-tools", false}} {
		if err := add(ctl.name, ctl.required); err != nil {
			return Binding{}, err
		}
	}
	list := strings.Join(b.UUIDs, ",")
	b.Env = []string{"NVIDIA_VISIBLE_DEVICES=" + list, "CUDA_VISIBLE_DEVICES=" + list}
	return b, nil
}

// hostNode stats devRoot/name, which must be a character device.
func hostNode(devRoot, name string) (DeviceNode, error) {
	p := filepath.Join(devRoot, name)
	d, err := hostdev.Stat(p)
	if err == nil && d.Type != "c" {
		err = hostdev.ErrNotDevice
	}
	if err != nil {
		return DeviceNode{}, fmt.Errorf("GPU device node %s: %w", p, err)
	}
	return DeviceNode{Path: "/dev/" + name, HostPath: p, Major: d.Major, Minor: d.Minor, Mode: *d.FileMode}, nil
}
