// Package version carries the build's version, set by the linker
// (-X github.com/enroot-cri/enroot-cri/internal/version.Version=...).
package version

// Version is the release of this build; "dev" for an unreleased tree.
var Version = "dev"

// CRIAPIVersion is the CRI API version the daemon serves.
const CRIAPIVersion = "v1"

// RuntimeName is the name the daemon reports in the CRI Version call.
const RuntimeName = "enroot-cri"
