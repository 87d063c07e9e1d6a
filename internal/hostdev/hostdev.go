package hostdev

import (
	"errors"
	"os"
	"strconv"
	"strings"

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

// BlockName is the /dev name of a block device by its numbers, as sysfs gives it
// ("/dev/vda"), or "MAJOR:MINOR" when sysfs does not know it (an overlay's anonymous
// device).
func BlockName(major, minor uint64) string {
	id := strconv.FormatUint(major, 10) + ":" + strconv.FormatUint(minor, 10)
	data, err := os.ReadFile("/sys/dev/block/" + id + "/uevent")
	if err != nil {
		return id
	}
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok && name != "" {
			return "/dev/" + name
		}
	}
	return id
}
