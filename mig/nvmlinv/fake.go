//go:build cgo

package nvmlinv

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh200"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// Fake returns one of go-nvml's fake machines ("dgxa100", "dgxh100", "dgxh200"), GPU
// UUIDs fixed, with
// GPU 6 and GPU 7 in MIG mode: GPU 6 split into seven 1-slice instances, GPU 7 into a
// 3-slice and a 4-slice instance; GPUs 0 to 5 stay whole. go-nvml's fakes create GPU and compute instances but
// leave out the MIG device handles; they are filled in here.
func Fake(machine string) (nvml.Interface, error) {
	var s *server.Server
	switch machine {
	case "dgxa100":
		s = dgxa100.New()
	case "dgxh100":
		s = dgxh100.New()
	case "dgxh200":
		s = dgxh200.New()
	default:
		return nil, fmt.Errorf("no fake machine %q: dgxa100, dgxh100 or dgxh200", machine)
	}
	// go-nvml gives its fake GPUs random UUIDs; fixed ones let two processes (the
	// daemon and a Slurm prolog) agree on them.
	for i, d := range s.Devices {
		d.(*server.Device).UUID = fmt.Sprintf("GPU-%08x-0000-4000-8000-%012x", i, i)
	}
	layouts := map[int][]int{
		6: {nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE,
			nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE,
			nvml.GPU_INSTANCE_PROFILE_1_SLICE},
		7: {nvml.GPU_INSTANCE_PROFILE_3_SLICE, nvml.GPU_INSTANCE_PROFILE_4_SLICE},
	}
	for i, profiles := range layouts {
		if err := split(s.Devices[i].(*server.Device), profiles); err != nil {
			return nil, fmt.Errorf("fake GPU %d: %w", i, err)
		}
	}
	return s, nil
}

// split puts d in MIG mode with one GPU instance per profile, each with one compute
// instance over all its slices, and gives d the MIG device handles NVML would.
func split(d *server.Device, profiles []int) error {
	if ret, _ := d.SetMigMode(nvml.DEVICE_MIG_ENABLE); ret != nvml.SUCCESS {
		return fmt.Errorf("set MIG mode: %s", nvml.ErrorString(ret))
	}
	var handles []nvml.Device
	gis := map[int]nvml.GpuInstance{}
	for n, p := range profiles {
		info, ret := d.GetGpuInstanceProfileInfo(p)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("GPU instance profile %d: %s", p, nvml.ErrorString(ret))
		}
		gi, ret := d.CreateGpuInstance(&info)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("create GPU instance: %s", nvml.ErrorString(ret))
		}
		giInfo, _ := gi.GetInfo()
		ciProfile := map[int]int{nvml.GPU_INSTANCE_PROFILE_1_SLICE: nvml.COMPUTE_INSTANCE_PROFILE_1_SLICE,
			nvml.GPU_INSTANCE_PROFILE_3_SLICE: nvml.COMPUTE_INSTANCE_PROFILE_3_SLICE,
			nvml.GPU_INSTANCE_PROFILE_4_SLICE: nvml.COMPUTE_INSTANCE_PROFILE_4_SLICE}[p]
		ciInfo, ret := gi.GetComputeInstanceProfileInfo(ciProfile, nvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("compute instance profile %d: %s", ciProfile, nvml.ErrorString(ret))
		}
		ci, ret := gi.CreateComputeInstance(&ciInfo)
		if ret != nvml.SUCCESS {
			return fmt.Errorf("create compute instance: %s", nvml.ErrorString(ret))
		}
		gis[int(giInfo.Id)] = gi
		cis := map[int]nvml.ComputeInstance{}
		ciID := int(ci.(*server.ComputeInstance).Info.Id)
		cis[ciID] = ci
		g := gi.(*server.GpuInstance)
		g.GetComputeInstanceByIdFunc = func(id int) (nvml.ComputeInstance, nvml.Return) {
			if c, ok := cis[id]; ok {
				return c, nvml.SUCCESS
			}
			return nil, nvml.ERROR_NOT_FOUND
		}
		memMB := info.MemorySizeMB
		h := &mock.Device{}
		uuid := fmt.Sprintf("MIG-%08x-%04x-%04x-%04x-%012x", d.Index, giInfo.Id, ciID, n, d.Minor)
		giID := int(giInfo.Id)
		h.GetUUIDFunc = func() (string, nvml.Return) { return uuid, nvml.SUCCESS }
		h.GetGpuInstanceIdFunc = func() (int, nvml.Return) { return giID, nvml.SUCCESS }
		h.GetComputeInstanceIdFunc = func() (int, nvml.Return) { return ciID, nvml.SUCCESS }
		h.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: memMB << 20}, nvml.SUCCESS }
		h.GetAttributesFunc = func() (nvml.DeviceAttributes, nvml.Return) {
			return nvml.DeviceAttributes{GpuInstanceSliceCount: info.SliceCount, ComputeInstanceSliceCount: ciInfo.SliceCount,
				MemorySizeMB: memMB}, nvml.SUCCESS
		}
		h.GetDeviceHandleFromMigDeviceHandleFunc = func() (nvml.Device, nvml.Return) { return d, nvml.SUCCESS }
		h.IsMigDeviceHandleFunc = func() (bool, nvml.Return) { return true, nvml.SUCCESS }
		handles = append(handles, h)
	}
	d.GetGpuInstanceByIdFunc = func(id int) (nvml.GpuInstance, nvml.Return) {
		if gi, ok := gis[id]; ok {
			return gi, nvml.SUCCESS
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	d.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
	d.GetMigDeviceHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i < 0 || i >= len(handles) {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return handles[i], nvml.SUCCESS
	}
	return nil
}
