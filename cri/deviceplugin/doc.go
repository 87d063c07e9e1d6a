// Package deviceplugin advertises the node's GPUs and MIG slices to the kubelet
// (k8s.io/kubelet device plugin API v1beta1) as nvidia.com/gpu and
// nvidia.com/mig-<profile>, and marks those a Slurm job holds in the node ledger
// unhealthy, so that the scheduler stops placing pods on them. It is off unless
// [gpus] device_plugin is set.
package deviceplugin
