// Package tests holds end-to-end tests of the enroot-cri binary: the daemon started as
// a process on a scratch configuration, driven over its socket with gRPC and with
// crictl (sigs.k8s.io/cri-tools), against registries on 127.0.0.1.
//
// The binary comes from $ENROOT_CRI_BIN (make test sets it) or is built on the fly;
// crictl from $CRICTL, and the crictl tests skip when it is absent.
package tests
