package mig

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/ledger"
)

func TestJobHooks(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	cgroupRoot := t.TempDir()
	// Job 7's cpuset cgroup, as slurmd's cgroup/v1 plugin makes it.
	job7 := filepath.Join(cgroupRoot, "cpuset", "slurm", "uid_1000", "job_7")
	require.NoError(t, os.MkdirAll(job7, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(job7, "cpuset.cpus"), []byte("2-3\n"), 0o644))
	newHooks := func(vars map[string]string) JobHooks {
		return JobHooks{Ledger: &ledger.Ledger{Path: filepath.Join(cgroupRoot, "ledger.json")}, Getenv: env(vars),
			Inventory: machine, CgroupRoot: cgroupRoot, Now: func() time.Time { return time.Unix(1700000000, 0) }}
	}
	pod := ledger.Holder{Kind: ledger.HolderPod, ID: "c0ffee0123456789", Name: "ns/pod/c"}

	cases := []struct {
		name      string
		vars      map[string]string
		ask       func(string) ([]int, error)
		strict    bool
		wantMsg   string
		wantErr   string
		wantCode  int
		wantCPUs  map[int]string
		wantGPUs  []string
		podHolds  string
		releaseID string
	}{
		{name: "MIG slice by UUID, CPUs from the job's cgroup",
			vars:    map[string]string{"SLURM_JOB_ID": "7", "SLURM_JOB_USER": "alice", "CUDA_VISIBLE_DEVICES": "MIG-0001"},
			wantMsg: "Slurm job 7 holds GPU(s) MIG-0001 and CPUs [2 3]", wantCPUs: map[int]string{2: "7", 3: "7"},
			wantGPUs: []string{"MIG-0001"}, releaseID: "7"},
		{name: "whole GPU by index, CPUs from scontrol before the cgroup exists",
			vars:    map[string]string{"SLURM_JOB_ID": "8", "SLURM_JOB_GPUS": "1"},
			ask:     func(id string) ([]int, error) { assert.Equal(t, "8", id); return []int{5}, nil },
			wantMsg: "Slurm job 8 holds GPU(s) GPU-bbbb and CPUs [5]", wantCPUs: map[int]string{5: "8"},
			wantGPUs: []string{"GPU-bbbb"}, releaseID: "8"},
		{name: "scontrol failing leaves the CPUs unclaimed, the job runs",
			vars:    map[string]string{"SLURM_JOB_ID": "9", "SLURM_JOB_GPUS": "1"},
			ask:     func(string) ([]int, error) { return nil, errors.New("slurmctld down") },
			wantMsg: "Slurm job 9 holds GPU(s) GPU-bbbb and CPUs []", wantGPUs: []string{"GPU-bbbb"}, releaseID: "9"},
		{name: "a GPU a pod holds fails the job",
			vars:     map[string]string{"SLURM_JOB_ID": "10", "CUDA_VISIBLE_DEVICES": "MIG-0002"},
			podHolds: "MIG-0002", wantErr: "GPU MIG-0002 is held by", wantCode: 1},
		{name: "an unknown GPU is our failure: the job runs",
			vars:    map[string]string{"SLURM_JOB_ID": "11", "SLURM_JOB_GPUS": "9"},
			wantErr: "job 11", wantCode: 0},
		{name: "strict: every failure fails the job",
			vars:   map[string]string{"SLURM_JOB_ID": "12", "SLURM_JOB_GPUS": "9"},
			strict: true, wantErr: "job 12", wantCode: 1},
		{name: "no job ID", vars: map[string]string{}, wantErr: "SLURM_JOB_ID is not set", wantCode: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHooks(c.vars)
			h.AskCPUs, h.Strict = c.ask, c.strict
			require.NoError(t, os.RemoveAll(h.Ledger.Path))
			if c.podHolds != "" {
				require.NoError(t, h.Ledger.Claim([]string{c.podHolds}, pod))
			}
			msg, err := h.Prolog()
			assert.Equal(t, c.wantCode, h.ExitCode(err))
			if c.wantErr != "" {
				require.ErrorContains(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.wantMsg, msg)
			claims, err := h.Ledger.Read()
			require.NoError(t, err)
			for _, g := range c.wantGPUs {
				assert.Equal(t, ledger.HolderSlurm, claims.Devices[g].Kind, g)
			}
			assert.Equal(t, c.wantCPUs, nilIfEmpty(claims.SlurmCPUs()))

			id, freed, err := h.Epilog()
			require.NoError(t, err)
			assert.Equal(t, c.releaseID, id)
			assert.Equal(t, c.wantGPUs, freed)
			claims, err = h.Ledger.Read()
			require.NoError(t, err)
			assert.Empty(t, claims.Devices)
			assert.Empty(t, claims.SlurmCPUs())
		})
	}
	_, _, err := newHooks(map[string]string{}).Epilog()
	assert.ErrorContains(t, err, "SLURM_JOB_ID is not set")
}

func nilIfEmpty(m map[int]string) map[int]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
