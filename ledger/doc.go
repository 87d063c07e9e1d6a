// Package ledger is a node's record of who holds what the node shares between
// Kubernetes pods and Slurm jobs: each GPU and MIG slice (by UUID), held by a container
// or a job, and the CPUs each Slurm job has (pods keep off them). It is one JSON file
// per node, locked with flock, shared by the daemon and `enroot-cri slurm
// prolog/epilog`, so that slurmd and the kubelet never hand out the same device twice.
//
// It is a leaf: it imports nothing of cri/, enroot/, cgroups/ or mig/.
package ledger
