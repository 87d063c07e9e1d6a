// Package sandbox makes the namespaces that a group of containers shares (a pod): new
// network, IPC and UTS namespaces pinned by bind mounts (no pause container), a shared
// /dev/shm, and, when the group shares one PID namespace, a tiny holder process that is
// its PID 1.
//
// It is part of the enroot leaf: it knows nothing of Kubernetes or the CRI. Pins and
// mounts live under the directory given to Create; Destroy removes all of them and is
// safe to repeat.
package sandbox
