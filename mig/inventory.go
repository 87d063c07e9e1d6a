package mig

import (
	"fmt"
	"strconv"
	"strings"
)

// GPU is one physical GPU.
type GPU struct {
	Index      int     `json:"index"`
	UUID       string  `json:"uuid"`
	Minor      int     `json:"minor"` // of /dev/nvidia<minor>
	Name       string  `json:"name"`
	MemoryMiB  uint64  `json:"memory_mib"`
	MIGCurrent bool    `json:"mig_current"`
	MIGPending bool    `json:"mig_pending"`
	Slices     []Slice `json:"slices,omitempty"`
}

// Slice is one MIG device: a compute instance of a GPU instance.
type Slice struct {
	UUID      string `json:"uuid"`
	Profile   string `json:"profile"` // such as 1g.10gb
	GPU       int    `json:"gpu"`     // the parent's index
	GI        int    `json:"gi"`
	CI        int    `json:"ci"`
	MemoryMiB uint64 `json:"memory_mib"`
}

// Inventory is what NVML reports; Unavailable says why it is empty on a node without
// NVML.
type Inventory struct {
	Driver      string `json:"driver,omitempty"`
	GPUs        []GPU  `json:"gpus"`
	Unavailable string `json:"unavailable,omitempty"`
}

// Device is a GPU or a slice as a container gets it.
type Device struct {
	UUID   string
	Parent GPU
	Slice  *Slice // nil for a whole GPU
}

// Units are the devices a container can be given: the slices of a GPU in MIG mode,
// the GPU itself otherwise.
func (inv Inventory) Units() []Device {
	var out []Device
	for _, g := range inv.GPUs {
		if !g.MIGCurrent {
			out = append(out, Device{UUID: g.UUID, Parent: g})
			continue
		}
		for i := range g.Slices {
			out = append(out, Device{UUID: g.Slices[i].UUID, Parent: g, Slice: &g.Slices[i]})
		}
	}
	return out
}

// Lookup finds devices by the names the NVIDIA toolkit accepts: "all", a GPU index
// ("0"), a MIG index ("0:1", GPU 0's second slice), a GPU UUID ("GPU-…") or a MIG
// UUID ("MIG-…"). "none" and "void" and the empty name select nothing.
func (inv Inventory) Lookup(names []string) ([]Device, error) {
	var out []Device
	seen := map[string]bool{}
	add := func(d Device) {
		if !seen[d.UUID] {
			seen[d.UUID] = true
			out = append(out, d)
		}
	}
	for _, name := range names {
		name = strings.TrimSpace(name)
		switch {
		case name == "" || name == "none" || name == "void":
		case name == "all":
			for _, d := range inv.Units() {
				add(d)
			}
		case strings.HasPrefix(name, "GPU-") || strings.HasPrefix(name, "MIG-"):
			d, ok := inv.byUUID(name)
			if !ok {
				return nil, fmt.Errorf("GPU %q: no such GPU or MIG device on this node", name)
			}
			add(d)
		default:
			d, err := inv.byIndex(name)
			if err != nil {
				return nil, err
			}
			add(d)
		}
	}
	return out, nil
}

func (inv Inventory) byUUID(uuid string) (Device, bool) {
	for _, g := range inv.GPUs {
		if g.UUID == uuid {
			return Device{UUID: g.UUID, Parent: g}, true
		}
		for i := range g.Slices {
			if g.Slices[i].UUID == uuid {
				return Device{UUID: uuid, Parent: g, Slice: &g.Slices[i]}, true
			}
		}
	}
	return Device{}, false
}

func (inv Inventory) byIndex(name string) (Device, error) {
	gpu, sub, isMIG := strings.Cut(name, ":")
	gi, err := strconv.Atoi(gpu)
	if err != nil {
		return Device{}, fmt.Errorf("GPU %q: not all, none, an index, an index:slice or a GPU-/MIG- UUID", name)
	}
	for _, g := range inv.GPUs {
		if g.Index != gi {
			continue
		}
		if !isMIG {
			if g.MIGCurrent {
				return Device{}, fmt.Errorf("GPU %q is in MIG mode: name its slices (%d:N or MIG-…)", name, gi)
			}
			return Device{UUID: g.UUID, Parent: g}, nil
		}
		si, err := strconv.Atoi(sub)
		if err != nil || si < 0 || si >= len(g.Slices) {
			return Device{}, fmt.Errorf("GPU %q: GPU %d has %d MIG slices", name, gi, len(g.Slices))
		}
		return Device{UUID: g.Slices[si].UUID, Parent: g, Slice: &g.Slices[si]}, nil
	}
	return Device{}, fmt.Errorf("GPU %q: no GPU with index %d on this node", name, gi)
}
