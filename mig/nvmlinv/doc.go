// Package nvmlinv reads a node's GPUs and MIG devices from NVML. It needs cgo
// (go-nvml loads libnvidia-ml.so.1 with dlopen), so the static daemon runs it out of
// process, as `enroot-cri-nvml`.
package nvmlinv
