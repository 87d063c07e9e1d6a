package mig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/enroot-cri/enroot-cri/internal/cpulist"
)

// SlurmJob is what Slurm's prolog environment says a job holds on this node.
type SlurmJob struct {
	ID      string
	User    string
	Devices []Device
	CPUs    []int
}

// ReadSlurmJob reads a job from the prolog/epilog environment: SLURM_JOB_ID, its GPUs
// from CUDA_VISIBLE_DEVICES when that holds UUIDs (as Slurm sets it for MIG devices),
// else SLURM_JOB_GPUS (indices), and its CPUs from the job's cpuset cgroup under
// cgroupRoot when it exists already (else the caller asks scontrol).
func ReadSlurmJob(getenv func(string) string, inv Inventory, cgroupRoot string) (SlurmJob, error) {
	job := SlurmJob{ID: getenv("SLURM_JOB_ID"), User: getenv("SLURM_JOB_USER")}
	if job.ID == "" {
		return job, errors.New("SLURM_JOB_ID is not set: run this as Slurm's Prolog or Epilog")
	}
	names := strings.Split(getenv("CUDA_VISIBLE_DEVICES"), ",")
	if !strings.HasPrefix(names[0], "GPU-") && !strings.HasPrefix(names[0], "MIG-") {
		names = strings.Split(getenv("SLURM_JOB_GPUS"), ",")
	}
	devs, err := inv.Lookup(names)
	if err != nil {
		return job, fmt.Errorf("job %s: %w", job.ID, err)
	}
	job.Devices = devs
	cpus, err := jobCPUs(cgroupRoot, job.ID)
	if err != nil {
		return job, fmt.Errorf("job %s: %w", job.ID, err)
	}
	job.CPUs = cpus
	return job, nil
}

// jobCPUs reads the job's cpuset: cgroup v1 <root>/cpuset/slurm*/uid_*/job_<id>, or
// cgroup v2 <root>/**/job_<id> below slurmstepd's scope. No cgroup means no CPUs known.
func jobCPUs(root, id string) ([]int, error) {
	patterns := []string{
		filepath.Join(root, "cpuset", "slurm*", "uid_*", "job_"+id, "cpuset.cpus"),
		filepath.Join(root, "system.slice", "*slurmstepd.scope", "job_"+id, "cpuset.cpus.effective"),
		filepath.Join(root, "*", "system.slice", "*slurmstepd.scope", "job_"+id, "cpuset.cpus.effective"),
	}
	for _, p := range patterns {
		matches, _ := filepath.Glob(p)
		if len(matches) == 0 {
			continue
		}
		data, err := os.ReadFile(matches[0])
		if err != nil {
			return nil, err
		}
		return cpulist.Parse(strings.TrimSpace(string(data)))
	}
	return nil, nil
}

// ScontrolCPUs reads the CPU IDs a job holds on node from `scontrol show job -d`
// output (lines such as "  Nodes=node1 CPU_IDs=0-3 Mem=1024 GRES="). Slurm's CPU IDs
// are the OS's on nodes whose slurm.conf does not renumber them.
func ScontrolCPUs(out, node string) ([]int, error) {
	for _, line := range strings.Split(out, "\n") {
		var nodes, ids string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "Nodes="); ok {
				nodes = v
			}
			if v, ok := strings.CutPrefix(f, "CPU_IDs="); ok {
				ids = v
			}
		}
		if ids != "" && (nodes == node || node == "") {
			return cpulist.Parse(ids)
		}
	}
	return nil, nil
}
