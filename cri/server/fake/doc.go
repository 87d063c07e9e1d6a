// Package fake has in-memory stand-ins for the seams of package server (the engine,
// image mounts, image store, sandboxes, network and cgroups), so that tests of what a
// CRI handler decides run without root or a live kernel. The GPU ledger needs no fake:
// ledger.Ledger on a file in a test's directory is the real one. Faults make any named
// call fail, for tests of what a failed step undoes.
package fake
