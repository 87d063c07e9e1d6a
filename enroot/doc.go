// Package enroot is the Enroot engine of enroot-cri: the node's Enroot configuration
// and identity (this package), the squashfs image store (enroot/image), pod sandboxes
// (enroot/sandbox: the namespaces a pod's containers share) and containers
// (enroot/container: the monitor, the init and the CRI log).
//
// It is a leaf: it never imports cri/, cgroups/ or mig/. It follows Enroot's contract
// (../shared/ENROOT.md): configuration files are read the way Enroot reads them, and
// the process environment overrides them.
package enroot
