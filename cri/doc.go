// Package cri is the only part of enroot-cri that knows the Container Runtime
// Interface. Its subpackages turn CRI requests into plain values for the leaf packages
// (enroot/, cgroups/, mig/) and their results into CRI responses:
//
//   - cri/server: the gRPC RuntimeService and ImageService, one RPC per file;
//   - cri/daemon: the process around them (socket, recovery, signals).
package cri
