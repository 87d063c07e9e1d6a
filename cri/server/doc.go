// Package server implements the CRI RuntimeService and ImageService (runtime.v1).
//
// One RPC per file, named <object>_<verb>.go. A handler validates its request,
// delegates to a leaf package and builds the response; it never builds a gRPC status
// itself: errors carry errdefs kinds and the interceptor (interceptor.go) maps them to
// codes, logs the call, and answers Unavailable until recovery has finished.
//
// It may import enroot/, cgroups/, mig/, config, errdefs, internal/ packages, and of
// cri/ only cri/network and cri/metrics.
package server
