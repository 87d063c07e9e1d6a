package server

import (
	"context"
	"slices"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/internal/cpulist"
	"github.com/enroot-cri/enroot-cri/internal/logging"
)

// confinement is a container's cgroup resources: the kubelet's request turned into
// what slurmd would set under the node's cgroup.conf, and the container's device
// rules (devices nil leaves the rules as they are, for an update). self is left out
// of the CPU load, so that an update does not count the container against itself.
// A container that is not pinned to CPUs gets, while Slurm jobs hold CPUs, the
// others (auto is then true); followSlurmCPUs keeps that up to date.
func (s *Server) confinement(r *runtimeapi.LinuxContainerResources, privileged bool, devices []specs.LinuxDevice, self string) (res *specs.LinuxResources, auto bool) {
	node := s.node
	node.CPUs = s.freeCPUs()
	node.Load = map[int]int{}
	for _, c := range s.recs.allContainers() {
		if c.ID == self || c.State == containerExited || c.Cpuset == "" || c.CpusetAuto {
			continue
		}
		cpus, _ := cpulist.Parse(c.Cpuset)
		for _, cpu := range cpus {
			node.Load[cpu]++
		}
	}
	res = s.policy.Confine(resources(r), node)
	if limit := s.cfg.Cgroups.PidsLimit; limit > 0 && res.Pids == nil {
		res.Pids = &specs.LinuxPids{Limit: &limit}
	}
	if devices != nil {
		res.Devices = cgroups.DeviceRules(privileged, append(devices, s.allowedDevices...))
	}
	if cpuset(res) == "" && len(node.CPUs) < len(s.node.CPUs) {
		cpu := specs.LinuxCPU{}
		if res.CPU != nil {
			cpu = *res.CPU
		}
		cpu.Cpus = cpulist.Format(node.CPUs)
		res.CPU, auto = &cpu, true
	}
	return res, auto
}

// freeCPUs are the node's CPUs less those Slurm jobs hold (all of them when that
// would leave none).
func (s *Server) freeCPUs() []int {
	claims, err := s.ledger.Read()
	if err != nil {
		return s.node.CPUs
	}
	held := claims.SlurmCPUs()
	free := slices.DeleteFunc(slices.Clone(s.node.CPUs), func(cpu int) bool { _, ok := held[cpu]; return ok })
	if len(free) == 0 {
		return s.node.CPUs
	}
	return free
}

// followSlurmCPUs moves the containers that are not pinned off the CPUs Slurm jobs
// hold, and back when the jobs end: it watches the ledger, which the prolog and
// epilog change.
func (s *Server) followSlurmCPUs(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := s.ledger.ModTime()
		if err != nil || changed.Equal(last) {
			continue
		}
		last = changed
		free := cpulist.Format(s.freeCPUs())
		all := cpulist.Format(s.node.CPUs)
		for _, c := range s.recs.allContainers() {
			pinned := c.Cpuset != "" && !c.CpusetAuto
			if c.State == containerExited || pinned || c.Cpuset == free || (c.Cpuset == "" && free == all) {
				continue
			}
			s.moveToCPUs(ctx, c.ID, free)
		}
	}
}

func (s *Server) moveToCPUs(ctx context.Context, id, cpus string) {
	unlock := s.recs.lock(id)
	defer unlock()
	c, err := s.recs.container(id)
	if err != nil || c.State == containerExited {
		return
	}
	cg, err := s.cgroups.Load(c.CgroupPath)
	if err == nil {
		err = cg.Update(&specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: cpus}})
	}
	if err != nil {
		logging.From(ctx).Warn("cannot follow the CPUs Slurm jobs hold", "container", id, "error", err)
		return
	}
	updated := *c
	updated.Cpuset, updated.CpusetAuto = cpus, true
	if err := s.recs.saveContainer(&updated); err != nil {
		logging.From(ctx).Warn("save container record", "container", id, "error", err)
	}
}

// cpuset is the CPU set of res, empty when it does not pin.
func cpuset(res *specs.LinuxResources) string {
	if res.CPU == nil {
		return ""
	}
	return res.CPU.Cpus
}
