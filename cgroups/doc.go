// Package cgroups places containers in cgroups and confines them: it names cgroup paths
// for the cgroupfs and systemd drivers, creates a container's cgroup with its
// resources, adds processes, kills everything in it, reports OOM kills, and removes it.
// cgroup v1 and v2 go through github.com/containerd/cgroups/v3.
//
// It is a leaf: it never imports cri/, enroot/ or mig/. It touches only cgroups it
// created: Delete removes the container's own cgroup and nothing above it.
package cgroups
