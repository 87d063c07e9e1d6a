//go:build cgo

package nvmlinv

import (
	"errors"
	"fmt"

	"github.com/NVIDIA/go-nvlib/pkg/nvlib/device"
	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/enroot-cri/enroot-cri/mig"
)

// Load reads the inventory from the node's NVML; without libnvidia-ml.so.1 the
// inventory is empty and says why.
func Load() mig.Inventory {
	lib := nvml.New()
	inv, err := Discover(lib)
	if err != nil {
		return mig.Inventory{GPUs: []mig.GPU{}, Unavailable: err.Error()}
	}
	return inv
}

// Discover reads GPUs (index, UUID, minor, name, memory, MIG mode) and, for GPUs in
// MIG mode, their MIG devices with the profile go-nvlib names.
func Discover(lib nvml.Interface) (inv mig.Inventory, err error) {
	defer func() {
		// go-nvml panics when the library cannot be loaded at all.
		if r := recover(); r != nil {
			err = fmt.Errorf("NVML is not available: %v", r)
		}
	}()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return mig.Inventory{}, fmt.Errorf("NVML init: %s (is the NVIDIA driver, libnvidia-ml.so.1, installed?)", nvml.ErrorString(ret))
	}
	defer func() { _ = lib.Shutdown() }()
	inv.GPUs = []mig.GPU{}
	inv.Driver, _ = lib.SystemGetDriverVersion()
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return mig.Inventory{}, fmt.Errorf("NVML device count: %s", nvml.ErrorString(ret))
	}
	devlib := device.New(lib)
	for i := 0; i < n; i++ {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return mig.Inventory{}, fmt.Errorf("NVML GPU %d: %s", i, nvml.ErrorString(ret))
		}
		g, err := gpu(devlib, d, i)
		if err != nil {
			return mig.Inventory{}, fmt.Errorf("GPU %d: %w", i, err)
		}
		inv.GPUs = append(inv.GPUs, g)
	}
	return inv, nil
}

func gpu(devlib device.Interface, d nvml.Device, index int) (mig.GPU, error) {
	g := mig.GPU{Index: index}
	var ret nvml.Return
	if g.UUID, ret = d.GetUUID(); ret != nvml.SUCCESS {
		return g, errors.New(nvml.ErrorString(ret))
	}
	if g.Minor, ret = d.GetMinorNumber(); ret != nvml.SUCCESS {
		return g, errors.New(nvml.ErrorString(ret))
	}
	g.Name, _ = d.GetName()
	if mem, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
		g.MemoryMiB = mem.Total / (1 << 20)
	}
	cur, pending, ret := d.GetMigMode()
	if ret == nvml.ERROR_NOT_SUPPORTED {
		return g, nil
	}
	if ret != nvml.SUCCESS {
		return g, fmt.Errorf("MIG mode: %s", nvml.ErrorString(ret))
	}
	g.MIGCurrent, g.MIGPending = cur == nvml.DEVICE_MIG_ENABLE, pending == nvml.DEVICE_MIG_ENABLE
	if !g.MIGCurrent {
		return g, nil
	}
	count, ret := d.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return g, fmt.Errorf("MIG device count: %s", nvml.ErrorString(ret))
	}
	for j := 0; j < count; j++ {
		h, ret := d.GetMigDeviceHandleByIndex(j)
		if ret == nvml.ERROR_NOT_FOUND || ret == nvml.ERROR_INVALID_ARGUMENT {
			continue
		}
		if ret != nvml.SUCCESS {
			return g, fmt.Errorf("MIG device %d: %s", j, nvml.ErrorString(ret))
		}
		s, err := slice(devlib, h, index)
		if err != nil {
			return g, fmt.Errorf("MIG device %d: %w", j, err)
		}
		g.Slices = append(g.Slices, s)
	}
	return g, nil
}

func slice(devlib device.Interface, h nvml.Device, parent int) (mig.Slice, error) {
	s := mig.Slice{GPU: parent}
	var ret nvml.Return
	if s.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
		return s, errors.New(nvml.ErrorString(ret))
	}
	if s.GI, ret = h.GetGpuInstanceId(); ret != nvml.SUCCESS {
		return s, errors.New(nvml.ErrorString(ret))
	}
	if s.CI, ret = h.GetComputeInstanceId(); ret != nvml.SUCCESS {
		return s, errors.New(nvml.ErrorString(ret))
	}
	if mem, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
		s.MemoryMiB = mem.Total / (1 << 20)
	}
	md, err := devlib.NewMigDevice(h)
	if err != nil {
		return s, err
	}
	p, err := md.GetProfile()
	if err != nil {
		return s, err
	}
	s.Profile = p.String()
	return s, nil
}
