package container

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	seccomp "github.com/elastic/go-seccomp-bpf"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/inroot"
)

// capNames maps capability names to numbers.
var capNames = map[string]uintptr{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
	"CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
	"CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
	"CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18,
	"CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28,
	"CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32,
	"CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
	"CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}

// CapabilityNames lists the capabilities this process may hand out (its bounding set,
// which on some nodes lacks a few, such as CAP_SYS_RESOURCE), in number order.
func CapabilityNames() []string {
	bounding := boundingSet()
	var out []string
	for n := uintptr(0); n <= lastCap(); n++ {
		for name, c := range capNames {
			if c == n && bounding&(1<<n) != 0 {
				out = append(out, name)
			}
		}
	}
	return out
}

// boundingSet reads this process's capability bounding set.
func boundingSet() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return 0
}

func lastCap() uintptr {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 40
	}
	return uintptr(n)
}

func capMask(names []string) (uint64, error) {
	var m uint64
	for _, n := range names {
		c, ok := capNames[n]
		if !ok {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
		m |= 1 << c
	}
	return m, nil
}

// processSecurity is what the container's first process, and every exec into it,
// takes before it executes: a bounding set, capabilities, no_new_privs and seccomp.
type processSecurity struct {
	Caps       *specs.LinuxCapabilities `json:"caps,omitempty"`
	NoNewPrivs bool                     `json:"no_new_privs,omitempty"`
	Seccomp    *specs.LinuxSeccomp      `json:"seccomp,omitempty"`
}

// applyBeforeUser runs before the user switch, while the process is still root: it
// drops the bounding set, keeps capabilities across the switch, and loads seccomp now
// when no_new_privs is off (loading needs CAP_SYS_ADMIN then).
func (p processSecurity) applyBeforeUser() error {
	if p.Caps != nil {
		keep, err := capMask(p.Caps.Bounding)
		if err != nil {
			return err
		}
		for c := uintptr(0); c <= lastCap(); c++ {
			if keep&(1<<c) == 0 {
				if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
					return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
				}
			}
		}
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("keep capabilities: %w", err)
		}
	}
	if p.Seccomp != nil && !p.NoNewPrivs {
		return loadSeccomp(p.Seccomp)
	}
	return nil
}

// applyAfterUser sets the capability sets after the user switch.
func (p processSecurity) applyAfterUser() error {
	if p.Caps == nil {
		return nil
	}
	var sets [3]uint64
	for i, names := range [][]string{p.Caps.Effective, p.Caps.Permitted, p.Caps.Inheritable} {
		m, err := capMask(names)
		if err != nil {
			return err
		}
		sets[i] = m
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		data[i].Effective = uint32(sets[0] >> (32 * i))
		data[i].Permitted = uint32(sets[1] >> (32 * i))
		data[i].Inheritable = uint32(sets[2] >> (32 * i))
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for _, n := range p.Caps.Ambient {
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, capNames[n], 0, 0); err != nil {
			return fmt.Errorf("raise ambient %s: %w", n, err)
		}
	}
	return nil
}

// applyLast runs just before exec: no_new_privs, then seccomp when it waited for it.
func (p processSecurity) applyLast() error {
	if p.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
		if p.Seccomp != nil {
			return loadSeccomp(p.Seccomp)
		}
	}
	return nil
}

// loadSeccomp compiles an OCI seccomp profile to BPF and loads it on this thread.
func loadSeccomp(profile *specs.LinuxSeccomp) error {
	policy, err := seccompPolicy(profile)
	if err != nil {
		return err
	}
	if err := seccomp.LoadFilter(seccomp.Filter{Policy: *policy}); err != nil {
		return fmt.Errorf("load seccomp filter: %w", err)
	}
	return nil
}

// maskPaths hides paths of the root: a directory under an empty read-only tmpfs, a file
// under /dev/null. Missing paths are fine.
func maskPaths(rootfd int, paths []string) error {
	for _, p := range paths {
		fd, err := inroot.OpenPath(rootfd, p)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return err
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		target := inroot.ProcPath(fd)
		if err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = unix.Mount("tmpfs", target, "tmpfs", unix.MS_RDONLY, "size=0")
			} else {
				err = unix.Mount("/dev/null", target, "", unix.MS_BIND, "")
			}
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	return nil
}

// readonlyPaths makes paths of the root read-only. Missing paths are fine.
func readonlyPaths(rootfd int, paths []string) error {
	for _, p := range paths {
		fd, err := inroot.OpenPath(rootfd, p)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return err
		}
		target := inroot.ProcPath(fd)
		err = unix.Mount(target, target, "", unix.MS_BIND|unix.MS_REC, "")
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("bind %s: %w", p, err)
		}
		fd, err = inroot.OpenPath(rootfd, p) // the new mount
		if err != nil {
			return err
		}
		err = unix.Mount("", inroot.ProcPath(fd), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	return nil
}
