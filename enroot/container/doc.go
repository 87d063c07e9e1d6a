// Package container runs containers the Enroot way, with what the CRI needs on top:
// each image's squashfs is mounted read-only once and shared (ImageMounts), a
// container's root is an overlay with its own upper layer over it, and a detached
// per-container monitor (enroot-cri-shim) is the parent of the container's init
// (`enroot-cri init`, from a sealed copy of the daemon), holds its stdio, writes the CRI
// log and records the exit status. docs/internals.md draws the process tree and lists
// the bundle's files and the monitor's control requests.
//
// Invariants: the init does all setup, then waits for Start before it executes the
// command; the shim does not depend on the daemon; exit.json is written atomically
// and only by the shim; Engine.Delete and ImageMounts.Release are safe to repeat.
// It is part of the enroot leaf and imports neither cri/, cgroups/ nor mig/.
package container
