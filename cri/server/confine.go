package server

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
)

// confinement is a container's cgroup resources: the kubelet's request turned into
// what slurmd would set under the node's cgroup.conf, and the container's device
// rules (devices nil leaves the rules as they are, for an update). self is left out
// of the CPU load, so that an update does not count the container against itself.
func (s *Server) confinement(r *runtimeapi.LinuxContainerResources, privileged bool, devices []specs.LinuxDevice, self string) *specs.LinuxResources {
	node := s.node
	if claims, err := s.ledger.Read(); err == nil {
		// Keep off the CPUs Slurm jobs hold, unless that leaves none.
		held := claims.SlurmCPUs()
		free := slices.DeleteFunc(slices.Clone(node.CPUs), func(cpu int) bool { _, ok := held[cpu]; return ok })
		if len(free) > 0 {
			node.CPUs = free
		}
	}
	node.Load = map[int]int{}
	for _, c := range s.recs.allContainers() {
		if c.ID == self || c.State == containerExited || c.Cpuset == "" {
			continue
		}
		cpus, _ := cgroups.ParseCPUList(c.Cpuset)
		for _, cpu := range cpus {
			node.Load[cpu]++
		}
	}
	res := s.policy.Confine(resources(r), node)
	if devices != nil {
		res.Devices = cgroups.DeviceRules(privileged, append(devices, s.allowedDevices...))
	}
	return res
}

// cpuset is the CPU set of res, empty when it does not pin.
func cpuset(res *specs.LinuxResources) string {
	if res.CPU == nil {
		return ""
	}
	return res.CPU.Cpus
}
