// Package server implements the CRI RuntimeService and ImageService (runtime.v1).
//
// The RPCs are in files named <object>_<verb>.go (container_create.go, sandbox_run.go,
// image_pull.go, runtime_status.go), one RPC or a List/single pair per file; every other
// file is a helper and has no such prefix: spec.go, security.go, user.go, userns.go,
// volumes.go, gpus.go, confine.go and enroot_semantics.go build a container's
// configuration; records.go and pending.go keep what is on disk; lifecycle.go owns a
// container's moves between states, its exit and its events; recover.go runs at start.
//
// A handler validates its request, decides, and calls the host through the seams of
// seams.go (engine, image mounts, image store, sandboxes, network, GPU ledger, cgroups),
// which Options fills with the host's parts or a test's fakes (cri/server/fake): the
// tests beside the RPC files run without root. A handler never builds a gRPC status
// itself: errors carry errdefs kinds and the interceptor (interceptor.go) maps them to
// codes, logs the call, and answers Unavailable until recovery has finished.
//
// It may import enroot/, cgroups/, mig/, ledger, config, errdefs, internal/ packages, and of
// cri/ only cri/network and cri/metrics (and cri/server/fake in its tests).
package server
