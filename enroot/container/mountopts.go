package container

import (
	"strings"

	"golang.org/x/sys/unix"
)

// mountOptions is a mount's option list turned into mount(2) arguments.
type mountOptions struct {
	flags       uintptr   // flags for the mount itself
	propagation []uintptr // propagation changes applied after it
	data        []string  // options passed to the filesystem
	bind        bool
	readonly    bool
	recursiveRO bool // "rro": read-only all the way down (mount_setattr)
}

var flagOptions = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"relatime": {false, unix.MS_RELATIME}, "noatime": {false, unix.MS_NOATIME},
	"strictatime": {false, unix.MS_STRICTATIME}, "nodiratime": {false, unix.MS_NODIRATIME},
	"bind": {false, unix.MS_BIND}, "rbind": {false, unix.MS_BIND | unix.MS_REC},
}

var propagationOptions = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// parseMountOptions splits OCI mount options into flags, propagation and data.
func parseMountOptions(typ string, options []string) mountOptions {
	var m mountOptions
	for _, o := range options {
		if f, ok := flagOptions[o]; ok {
			if f.clear {
				m.flags &^= f.flag
			} else {
				m.flags |= f.flag
			}
			continue
		}
		if o == "rro" {
			m.recursiveRO = true
			continue
		}
		if p, ok := propagationOptions[o]; ok {
			m.propagation = append(m.propagation, p)
			continue
		}
		m.data = append(m.data, o)
	}
	m.bind = typ == "bind" || m.flags&unix.MS_BIND != 0
	if m.bind {
		m.flags |= unix.MS_BIND
	}
	m.readonly = m.flags&unix.MS_RDONLY != 0
	return m
}

func (m mountOptions) dataString() string { return strings.Join(m.data, ",") }
