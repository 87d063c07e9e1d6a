// Package mig knows a node's NVIDIA GPUs and MIG slices and what binding one to a
// container takes: device nodes, capability nodes, cgroup device rules and
// environment. It reads the Slurm job a prolog runs for (its GPUs and CPUs), and
// JobHooks is the Slurm prolog and epilog that claim and release a job's share in the
// node's ledger (package ledger; `enroot-cri slurm prolog|epilog`).
//
// The inventory comes from NVML (package mig/nvmlinv, which needs cgo; the daemon runs
// it out of process through `enroot-cri-nvml`). Host paths (/dev, /proc) are
// parameters so that tests use temporary trees.
//
// It is a leaf: it never imports cri/, enroot/ or cgroups/; of the others, only ledger.
package mig
