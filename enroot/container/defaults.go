package container

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultMounts are the filesystems every container gets, in mount order: /proc, a
// minimal /dev (tmpfs, its own devpts, shm and mqueue) and a read-only /sys. shm is the
// host path of the pod's shared memory mount, or empty for a private one.
func DefaultMounts(shm string) []specs.Mount {
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	if shm != "" {
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: shm,
			Options: []string{"rbind", "nosuid", "noexec", "nodev"}})
	} else {
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	return mounts
}

// DefaultDevices are the device nodes every container gets.
func DefaultDevices() []specs.LinuxDevice {
	mode := os.FileMode(0o666)
	dev := func(path string, major, minor int64) specs.LinuxDevice {
		return specs.LinuxDevice{Path: path, Type: "c", Major: major, Minor: minor, FileMode: &mode}
	}
	return []specs.LinuxDevice{
		dev("/dev/null", 1, 3), dev("/dev/zero", 1, 5), dev("/dev/full", 1, 7),
		dev("/dev/random", 1, 8), dev("/dev/urandom", 1, 9), dev("/dev/tty", 5, 0),
	}
}

// UsernsMounts adapts mounts to a container in its own user namespace, which may not
// mount sysfs or mqueue for namespaces the host owns: /sys becomes a bind of a sysfs
// the shim makes in the container's network namespace, read-only; /dev/mqueue is left
// out.
func UsernsMounts(mounts []specs.Mount) []specs.Mount {
	var out []specs.Mount
	for _, m := range mounts {
		switch m.Type {
		case "sysfs":
			out = append(out, specs.Mount{Destination: m.Destination, Type: "bind", Source: "/sys",
				Options: []string{"bind", "nosuid", "noexec", "nodev", "ro"}})
		case "mqueue":
		default:
			out = append(out, m)
		}
	}
	return out
}
