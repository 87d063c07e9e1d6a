// Package mig knows a node's NVIDIA GPUs and MIG slices, which of them a container or
// a Slurm job holds, and what binding one to a container takes: device nodes,
// capability nodes, cgroup device rules and environment. Its ledger also holds the
// CPUs Slurm jobs have (pods keep off them), and JobHooks is the Slurm prolog and
// epilog that claim and release a job's share (`enroot-cri slurm prolog|epilog`).
//
// The inventory comes from NVML (package mig/nvmlinv, which needs cgo; the daemon runs
// it out of process through `enroot-cri-nvml`). The ledger is one file per node,
// locked with flock, shared by the daemon and `enroot-cri slurm prolog/epilog`. Host
// paths (/dev, /proc) are parameters so that tests use temporary trees.
//
// It is a leaf: it never imports cri/, enroot/ or cgroups/.
package mig
