// Package version carries the build's version, set by the linker
// (-X github.com/enroot-cri/enroot-cri/internal/version.Version=...).
package version
