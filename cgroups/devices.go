package cgroups

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/enroot-cri/enroot-cri/internal/hostdev"
)

// rule is one device cgroup rule; major or minor -1 is the wildcard. Every field is
// set because the cgroup v2 eBPF filter dereferences them all.
func rule(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
	return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: &major, Minor: &minor, Access: access}
}

// defaultDeviceRules are the devices every container may use: creating nodes, and the
// usual character devices (null, zero, full, random, urandom, tty, console, ptmx and
// the pseudo-terminals).
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	return []specs.LinuxDeviceCgroup{
		rule(false, "a", -1, -1, "rwm"),
		rule(true, "c", -1, -1, "m"),
		rule(true, "b", -1, -1, "m"),
		rule(true, "c", 1, 3, "rwm"),    // null
		rule(true, "c", 1, 5, "rwm"),    // zero
		rule(true, "c", 1, 7, "rwm"),    // full
		rule(true, "c", 1, 8, "rwm"),    // random
		rule(true, "c", 1, 9, "rwm"),    // urandom
		rule(true, "c", 5, 0, "rwm"),    // tty
		rule(true, "c", 5, 1, "rwm"),    // console
		rule(true, "c", 5, 2, "rwm"),    // ptmx
		rule(true, "c", 136, -1, "rwm"), // pts
	}
}

// DeviceRules are a container's device cgroup rules: deny by default, the usual
// devices, and read, write and mknod on each device given (the container's own device
// nodes and those bound to it). A privileged container may use every device.
func DeviceRules(privileged bool, devices []specs.LinuxDevice) []specs.LinuxDeviceCgroup {
	if privileged {
		return []specs.LinuxDeviceCgroup{rule(true, "a", -1, -1, "rwm")}
	}
	out := defaultDeviceRules()
	for _, d := range devices {
		typ := d.Type
		if typ == "u" {
			typ = "c"
		}
		if typ != "c" && typ != "b" {
			continue
		}
		out = append(out, rule(true, typ, d.Major, d.Minor, "rwm"))
	}
	return out
}

// AllowedDevices reads the AllowedDevicesFile: one device path or shell pattern per
// line ("/dev/sda*"), each matching host device node allowed. It is empty without
// ConstrainDevices or without the file.
func (c SlurmConf) AllowedDevices() ([]specs.LinuxDevice, error) {
	if !c.ConstrainDevices || c.AllowedDevicesFile == "" {
		return nil, nil
	}
	f, err := os.Open(c.AllowedDevicesFile)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read AllowedDevicesFile: %w", err)
	}
	defer f.Close()
	var out []specs.LinuxDevice
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		pattern := strings.TrimSpace(sc.Text())
		if pattern == "" || strings.HasPrefix(pattern, "#") {
			continue
		}
		paths, err := filepath.Glob(pattern)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not a valid pattern", c.AllowedDevicesFile, n, pattern)
		}
		for _, p := range paths {
			if d, err := hostdev.Stat(p); err == nil {
				out = append(out, d)
			}
		}
	}
	return out, sc.Err()
}
