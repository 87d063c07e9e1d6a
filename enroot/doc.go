// Package enroot is the Enroot engine of enroot-cri: the node's Enroot configuration
// (this package), the squashfs image store (enroot/image) and, later, containers.
//
// It is a leaf: it never imports cri/, cgroups/ or mig/. It follows Enroot's contract
// (../shared/ENROOT.md): configuration files are read the way Enroot reads them, and
// the process environment overrides them.
package enroot
