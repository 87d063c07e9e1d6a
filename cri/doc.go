// Package cri is the only part of enroot-cri that knows the Container Runtime
// Interface. Its subpackages turn CRI requests into plain values for the leaf packages
// (enroot/, cgroups/, mig/, ledger/) and their results into CRI responses:
//
//   - cri/server: the gRPC RuntimeService and ImageService, one RPC per file;
//   - cri/daemon: the process around them (socket, recovery, signals);
//   - cri/network: pods on the node's CNI network;
//   - cri/metrics: the daemon's own Prometheus metrics;
//   - cri/imagesocket: the image socket of `enroot-cri images` and the pyxis importer;
//   - cri/deviceplugin: the node's GPUs and MIG slices for the kubelet;
//   - cri/doctor: `enroot-cri doctor`, the node's readiness checks.
package cri
