package mig

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/enroot-cri/enroot-cri/ledger"
)

// JobHooks is what `enroot-cri slurm prolog|epilog` does for a Slurm job on this node:
// the prolog claims the job's GPUs and CPUs in the ledger so that no pod gets them,
// the epilog gives them back. Host access comes in as fields so that tests run it on
// temporary trees.
type JobHooks struct {
	Ledger *ledger.Ledger
	Getenv func(string) string
	// Inventory reads the node's GPUs (the prolog only).
	Inventory func() Inventory
	// CgroupRoot is where the job's cpuset cgroup is looked for (/sys/fs/cgroup).
	CgroupRoot string
	// AskCPUs asks slurmctld for the job's CPUs on this node (scontrol show job -d),
	// for a prolog that runs before the job's cgroup exists; nil: do not ask.
	AskCPUs func(jobID string) ([]int, error)
	// Strict makes every failure fail the job ([gpus] prolog_strict); otherwise only a
	// GPU a pod holds does.
	Strict bool
	Now    func() time.Time
}

// Prolog claims the job's GPUs and CPUs and says what it claimed.
func (h JobHooks) Prolog() (string, error) {
	job, err := ReadSlurmJob(h.Getenv, h.Inventory(), h.CgroupRoot)
	if err != nil {
		return "", err
	}
	if len(job.CPUs) == 0 && h.AskCPUs != nil {
		// A failed question leaves the CPUs unclaimed, not the job failed.
		job.CPUs, _ = h.AskCPUs(job.ID)
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	holder := ledger.Holder{Kind: ledger.HolderSlurm, ID: job.ID, Name: job.User, Since: now()}
	var uuids []string
	for _, d := range job.Devices {
		uuids = append(uuids, d.UUID)
	}
	if err := h.Ledger.Claim(uuids, holder); err != nil {
		return "", err
	}
	if len(job.CPUs) > 0 {
		if err := h.Ledger.ClaimCPUs(holder, job.CPUs); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("Slurm job %s holds GPU(s) %s and CPUs %v", job.ID, strings.Join(uuids, ","), job.CPUs), nil
}

// Epilog releases what the job holds and returns its ID and the GPUs it freed.
func (h JobHooks) Epilog() (string, []string, error) {
	id := h.Getenv("SLURM_JOB_ID")
	if id == "" {
		return "", nil, errors.New("SLURM_JOB_ID is not set: run this as Slurm's Epilog")
	}
	freed, err := h.Ledger.Release(ledger.HolderSlurm, id)
	return id, freed, err
}

// ExitCode is the status slurmd should see after err: 1 drains the job (a GPU that a
// pod holds, or any failure when strict), 0 lets it run (a failure of ours alone does
// not stop a job).
func (h JobHooks) ExitCode(err error) int {
	var held *ledger.HeldError
	if err != nil && (errors.As(err, &held) || h.Strict) {
		return 1
	}
	return 0
}
