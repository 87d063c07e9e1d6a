// Package sealed makes a sealed in-memory copy of an executable (a memfd with every
// seal set), as runc does against CVE-2019-5736: the processes of enroot-cri that run
// inside a container (a container's init, the exec stage, the pod's PID holder) run
// from the copy, so /proc/self/exe there names an anonymous file nobody can write,
// never the runtime's binary on the host.
//
// Invariant: a sealed copy cannot be written, grown or shrunk, and its seals cannot
// be removed; sharing one among many processes is therefore safe.
package sealed
