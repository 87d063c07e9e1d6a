// Package hostdev describes the host's device nodes.
package hostdev

import (
	"errors"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrNotDevice is returned for a path that is not a character or block device.
var ErrNotDevice = errors.New("not a device node")

// Stat describes the device node at path: type, numbers and permission bits.
func Stat(path string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return specs.LinuxDevice{}, err
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, ErrNotDevice
	}
	mode := os.FileMode(st.Mode & 0o777)
	return specs.LinuxDevice{Path: path, Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)), FileMode: &mode}, nil
}
