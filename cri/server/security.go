package server

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// defaultCapabilities are the capabilities a container gets unless it asks otherwise,
// the same set as containerd's and Docker's.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Paths hidden from and made read-only for a container that is not privileged, when
// the kubelet sends no lists of its own (containerd's defaults).
var (
	defaultMaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap"}
	defaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// capabilities computes the container's capability sets: the defaults, less drops,
// plus adds ("ALL" in either), and every capability when privileged.
func capabilities(sc *runtimeapi.LinuxContainerSecurityContext, privileged bool) (*specs.LinuxCapabilities, error) {
	all := container.CapabilityNames()
	set := slices.Clone(defaultCapabilities)
	if privileged {
		set = all
	}
	norm := func(field string, names []string) ([]string, bool, error) {
		var out []string
		hasAll := false
		for _, n := range names {
			c := strings.ToUpper(n)
			if c == "ALL" {
				hasAll = true
				continue
			}
			if !strings.HasPrefix(c, "CAP_") {
				c = "CAP_" + c
			}
			if !slices.Contains(all, c) {
				return nil, false, fmt.Errorf("%s: unknown capability %q: %w", field, n, errdefs.ErrInvalidArgument)
			}
			out = append(out, c)
		}
		return out, hasAll, nil
	}
	drop, dropAll, err := norm("linux.security_context.capabilities.drop_capabilities", sc.GetCapabilities().GetDropCapabilities())
	if err != nil {
		return nil, err
	}
	add, addAll, err := norm("linux.security_context.capabilities.add_capabilities", sc.GetCapabilities().GetAddCapabilities())
	if err != nil {
		return nil, err
	}
	ambient, _, err := norm("linux.security_context.capabilities.add_ambient_capabilities", sc.GetCapabilities().GetAddAmbientCapabilities())
	if err != nil {
		return nil, err
	}
	if dropAll {
		set = nil
	}
	if addAll {
		set = slices.Clone(all)
	}
	set = append(set, add...)
	set = slices.DeleteFunc(set, func(c string) bool { return slices.Contains(drop, c) })
	set = append(set, ambient...)
	slices.Sort(set)
	set = slices.Compact(set)
	return &specs.LinuxCapabilities{Bounding: set, Effective: set, Permitted: set, Ambient: ambient}, nil
}

// seccompProfile returns the seccomp profile the container asks for (nil: unconfined),
// with the handler's default when it asks for none.
func seccompProfile(sc *runtimeapi.LinuxContainerSecurityContext, handlerDefault string) (*specs.LinuxSeccomp, error) {
	p := sc.GetSeccomp()
	kind, ref := p.GetProfileType(), p.GetLocalhostRef()
	if p == nil {
		switch path := sc.GetSeccompProfilePath(); { //nolint:staticcheck // older kubelets still send the deprecated field
		case path == "" && handlerDefault == "runtime/default", path == "runtime/default", path == "docker/default":
			kind = runtimeapi.SecurityProfile_RuntimeDefault
		case strings.HasPrefix(path, "localhost/"):
			kind, ref = runtimeapi.SecurityProfile_Localhost, strings.TrimPrefix(path, "localhost/")
		default:
			kind = runtimeapi.SecurityProfile_Unconfined
		}
	}
	switch kind {
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return defaultSeccomp(), nil
	case runtimeapi.SecurityProfile_Localhost:
		if !filepath.IsAbs(ref) {
			return nil, fmt.Errorf("linux.security_context.seccomp.localhost_ref %q must be an absolute path: %w", ref, errdefs.ErrInvalidArgument)
		}
		data, err := readProfile(ref)
		if err != nil {
			return nil, fmt.Errorf("linux.security_context.seccomp.localhost_ref: %w", errdefs.WithKind(err, errdefs.ErrInvalidArgument))
		}
		var profile specs.LinuxSeccomp
		if err := json.Unmarshal(data, &profile); err != nil {
			return nil, fmt.Errorf("seccomp profile %s is not an OCI/Docker seccomp profile: %w", ref, errdefs.WithKind(err, errdefs.ErrInvalidArgument))
		}
		return &profile, nil
	default:
		return nil, nil
	}
}

// checkLSM refuses AppArmor and SELinux profiles this host cannot apply; Unconfined and
// RuntimeDefault (nothing to apply where the LSM is absent) are accepted.
func checkLSM(sc *runtimeapi.LinuxContainerSecurityContext) error {
	aa := sc.GetApparmor()
	legacy := sc.GetApparmorProfile() //nolint:staticcheck // older kubelets still send the deprecated field
	wantAA := aa.GetProfileType() == runtimeapi.SecurityProfile_Localhost || strings.HasPrefix(legacy, "localhost/")
	if wantAA && !apparmorEnabled() {
		return fmt.Errorf("linux.security_context.apparmor asks for profile %q but AppArmor is not enabled on this node; use Unconfined or RuntimeDefault: %w",
			aa.GetLocalhostRef()+strings.TrimPrefix(legacy, "localhost/"), errdefs.ErrInvalidArgument)
	}
	// Where SELinux is off a label means nothing, and containerd and CRI-O ignore it:
	// charts and the conformance suite set seLinuxOptions routinely.
	if o := sc.GetSelinuxOptions(); o.GetUser() != "" || o.GetRole() != "" || o.GetType() != "" || o.GetLevel() != "" {
		if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
			return fmt.Errorf("linux.security_context.selinux_options: this node runs SELinux, and enroot-cri does not apply SELinux labels: %w", errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// maxProfileBytes bounds a seccomp profile file (Docker's default profile is 20 KB).
const maxProfileBytes = 1 << 20

// readProfile reads a Localhost seccomp profile: a regular file (a FIFO or device
// would block or stream), at most maxProfileBytes.
func readProfile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size() > maxProfileBytes {
		return nil, fmt.Errorf("%s is %d bytes; a seccomp profile may have at most %d", path, st.Size(), maxProfileBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxProfileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxProfileBytes {
		return nil, fmt.Errorf("%s has more than %d bytes", path, maxProfileBytes)
	}
	return data, nil
}

func apparmorEnabled() bool {
	data, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.TrimSpace(string(data)) == "Y"
}

// applySecurity sets the container's privileges in spec from its security context.
func (s *Server) applySecurity(spec *specs.Spec, pod *podRecord, cfg *runtimeapi.ContainerConfig) error {
	sc := cfg.GetLinux().GetSecurityContext()
	if err := checkLSM(sc); err != nil {
		return err
	}
	privileged := sc.GetPrivileged()
	if privileged {
		if !pod.config.GetLinux().GetSecurityContext().GetPrivileged() {
			return fmt.Errorf("linux.security_context.privileged needs a privileged pod sandbox: %w", errdefs.ErrInvalidArgument)
		}
		if !s.cfg.Runtimes[pod.Handler].AllowPrivileged {
			return fmt.Errorf("linux.security_context.privileged: runtime handler %q does not allow privileged containers (allow_privileged = false): %w", pod.Handler, errdefs.ErrInvalidArgument)
		}
	}
	caps, err := capabilities(sc, privileged)
	if err != nil {
		return err
	}
	spec.Process.Capabilities = caps
	spec.Process.NoNewPrivileges = sc.GetNoNewPrivs()
	if privileged {
		privilegedMounts(spec)
		return nil
	}
	if spec.Linux.Seccomp, err = seccompProfile(sc, s.cfg.Runtimes[pod.Handler].DefaultSeccomp); err != nil {
		return err
	}
	spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if len(spec.Linux.MaskedPaths) == 0 && len(spec.Linux.ReadonlyPaths) == 0 {
		spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = defaultMaskedPaths, defaultReadonlyPaths
	}
	return nil
}

// privilegedMounts gives a privileged container the host's /dev and a writable /sys.
func privilegedMounts(spec *specs.Spec) {
	for i, m := range spec.Mounts {
		switch m.Destination {
		case "/dev":
			spec.Mounts[i] = specs.Mount{Destination: "/dev", Type: "bind", Source: "/dev", Options: []string{"rbind", "rslave"}}
		case "/sys":
			spec.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
		}
	}
	// The host's /dev carries its own pts, shm and mqueue.
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(m specs.Mount) bool {
		return m.Destination == "/dev/pts" || m.Destination == "/dev/mqueue"
	})
	spec.Linux.Devices = nil
}
