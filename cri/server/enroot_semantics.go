package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// hookPath is the PATH hooks run with: the host's, which finds Enroot's helpers
// (enroot-mount and friends) and the tools the stock hooks call.
const hookPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// enrootUser is who a container of an Enroot handler is: the host user it acts as,
// and the single ID its user namespace maps (Enroot's `<0|uid> <uid> 1`).
type enrootUser struct {
	account  enroot.Account
	inside   identity // the IDs the container's processes have inside
	remapped bool     // root inside (ENROOT_REMAP_ROOT, or a pod running as root)
	uids     []specs.LinuxIDMapping
	gids     []specs.LinuxIDMapping
}

// enrootContainer gives a container of a handler of kind enroot what `enroot start`
// gives a Slurm job step of the same user under pyxis (docs/parity.md): a user
// namespace mapping only that user, Enroot's seccomp filter, no_new_privs, Enroot's
// capabilities, the user's identity from the host, the node's Enroot configuration
// and hooks, and the image's /etc/fstab.
func (s *Server) enrootContainer(ctx context.Context, out *container.Config, pod *podRecord, cfg *runtimeapi.ContainerConfig,
	img *image.Image, root string, base []string) (identity, error) {
	h := s.cfg.Runtimes[pod.Handler]
	if err := checkEnrootRequest(pod, cfg); err != nil {
		return identity{}, err
	}
	dir := s.cfg.EnrootDir(pod.Handler)
	settings, err := enroot.LoadSettings(dir, os.Environ())
	if err != nil {
		return identity{}, err
	}
	eu, err := s.enrootUser(ctx, pod.Handler, cfg, h.RemapRoot || settings.Flag("ENROOT_REMAP_ROOT"))
	if err != nil {
		return identity{}, err
	}
	spec := &out.Spec
	spec.Process.User = specUser(eu.inside)
	spec.Linux.UIDMappings, spec.Linux.GIDMappings = eu.uids, eu.gids
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	spec.Mounts = withoutGID(container.UsernsMounts(spec.Mounts))
	spec.Root.Readonly = spec.Root.Readonly || !settings.Flag("ENROOT_ROOTFS_WRITABLE")
	if spec.Root.Readonly {
		readonlyPodFiles(spec, pod)
	}
	if err := s.enrootSecurity(spec, pod, cfg, eu); err != nil {
		return identity{}, err
	}
	environ, err := enroot.Environ(dir, func(k string) (string, bool) { return enroot.Lookup(base, k) })
	if err != nil {
		return identity{}, err
	}
	spec.Process.Env = enroot.MergeEnv(enroot.MergeEnv(base, environ), criEnv(cfg))
	out.EnrootFilter, out.PresetGroups = true, true
	out.Enroot = s.enrootConfig(dir, settings, h, eu)
	return eu.inside, nil
}

// checkEnrootRequest refuses what an Enroot handler cannot give, naming the field.
func checkEnrootRequest(pod *podRecord, cfg *runtimeapi.ContainerConfig) error {
	sc := cfg.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() {
		return fmt.Errorf("linux.security_context.privileged: runtime handler %q (kind enroot) never runs privileged containers; use a handler of kind kubernetes: %w",
			pod.Handler, errdefs.ErrInvalidArgument)
	}
	if uids, _, _ := podUserns(pod.config); uids != nil {
		return fmt.Errorf("config.linux.security_context.namespace_options.userns_options: runtime handler %q (kind enroot) makes Enroot's user namespace itself; hostUsers: false is not supported there: %w",
			pod.Handler, errdefs.ErrInvalidArgument)
	}
	for i, kv := range cfg.GetEnvs() {
		if strings.HasPrefix(kv.GetKey(), "ENROOT_") {
			return fmt.Errorf("config.envs[%d].key %s: ENROOT_* variables are the node's Enroot configuration and cannot be set by a pod: %w",
				i, kv.GetKey(), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// enrootUser works out the host user a container acts as: run_as_user, else
// run_as_username from the host's user database, else root (Enroot ignores the
// image's USER); root is
// remapped to the handler's unprivileged IDs, and every other user must have an
// account on the node at or above min_uid.
func (s *Server) enrootUser(ctx context.Context, handler string, cfg *runtimeapi.ContainerConfig, remap bool) (enrootUser, error) {
	h := s.cfg.Runtimes[handler]
	sc := cfg.GetLinux().GetSecurityContext()
	// Enroot ignores the image's USER: the user is the caller, here the pod's.
	var uid uint32
	switch {
	case sc.GetRunAsUser() != nil:
		uid = uint32(sc.GetRunAsUser().GetValue())
	case sc.GetRunAsUsername() != "":
		var err error
		if uid, err = enroot.LookupName(ctx, sc.GetRunAsUsername()); err != nil {
			return enrootUser{}, fmt.Errorf("linux.security_context.run_as_username %q: %w", sc.GetRunAsUsername(), errdefs.WithKind(err, errdefs.ErrInvalidArgument))
		}
	}
	host := uid
	if uid == 0 {
		host = h.RemapRootUID
	}
	if uid != 0 && uid < h.MinUID {
		return enrootUser{}, fmt.Errorf("linux.security_context.run_as_user %d: runtime handler %q runs pods as users of this node, from uid %d (min_uid); system accounts are refused: %w",
			uid, handler, h.MinUID, errdefs.ErrInvalidArgument)
	}
	account, err := enroot.LookupAccount(ctx, host)
	if errors.Is(err, enroot.ErrNoAccount) {
		return enrootUser{}, fmt.Errorf("linux.security_context.run_as_user %d: runtime handler %q runs pods as users of this node, and uid %d has no account here (getent passwd %d): %w",
			uid, handler, host, host, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return enrootUser{}, err
	}
	gid := account.GID
	if uid == 0 {
		gid = h.RemapRootGID
	}
	if g := sc.GetRunAsGroup(); g != nil {
		gid = uint32(g.GetValue())
	}
	eu := enrootUser{account: account, remapped: uid == 0 || remap}
	eu.inside = identity{UID: int64(host), GID: int64(gid), Home: account.Home}
	eu.uids = []specs.LinuxIDMapping{{ContainerID: host, HostID: host, Size: 1}}
	eu.gids = []specs.LinuxIDMapping{{ContainerID: gid, HostID: gid, Size: 1}}
	if eu.remapped {
		eu.inside.UID, eu.inside.GID, eu.inside.Home = 0, 0, "/root"
		eu.uids[0].ContainerID, eu.gids[0].ContainerID = 0, 0
	}
	groups := []uint32{gid}
	if sc.GetSupplementalGroupsPolicy() != runtimeapi.SupplementalGroupsPolicy_Strict && uid != 0 {
		groups = append(groups, account.Groups...)
	}
	for _, g := range sc.GetSupplementalGroups() {
		groups = append(groups, uint32(g))
	}
	slices.Sort(groups)
	for _, g := range slices.Compact(groups) {
		eu.inside.Groups = append(eu.inside.Groups, int64(g))
	}
	return eu, nil
}

// enrootSecurity sets Enroot's privileges: no_new_privs always; a non-root user has no
// capabilities and an empty bounding set, root inside has every capability of its
// user namespace; the pod's drops apply, and its profile is laid over Enroot's filter.
func (s *Server) enrootSecurity(spec *specs.Spec, pod *podRecord, cfg *runtimeapi.ContainerConfig, eu enrootUser) error {
	sc := cfg.GetLinux().GetSecurityContext()
	if err := checkLSM(sc); err != nil {
		return err
	}
	var set []string
	if eu.remapped {
		set = container.CapabilityNames()
	}
	caps := sc.GetCapabilities()
	if add := caps.GetAddCapabilities(); len(add) > 0 && !eu.remapped {
		return fmt.Errorf("linux.security_context.capabilities.add_capabilities %v: under runtime handler %q a non-root user has no capabilities, as under Enroot: %w",
			add, pod.Handler, errdefs.ErrInvalidArgument)
	}
	for _, d := range caps.GetDropCapabilities() {
		c := strings.ToUpper(d)
		if c == "ALL" {
			set = nil
			break
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		set = slices.DeleteFunc(set, func(x string) bool { return x == c })
	}
	spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: set, Effective: set, Permitted: set}
	spec.Process.NoNewPrivileges = true
	var err error
	if spec.Linux.Seccomp, err = seccompProfile(sc, s.cfg.Runtimes[pod.Handler].DefaultSeccomp); err != nil {
		return err
	}
	spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if len(spec.Linux.MaskedPaths) == 0 && len(spec.Linux.ReadonlyPaths) == 0 {
		spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = defaultMaskedPaths, defaultReadonlyPaths
	}
	return nil
}

// enrootConfig is what the init applies of the node's Enroot configuration for eu.
func (s *Server) enrootConfig(dir string, settings enroot.Settings, h config.Runtime, eu enrootUser) *container.EnrootConfig {
	if eu.remapped {
		settings["ENROOT_REMAP_ROOT"] = "y"
	}
	a := eu.account
	lib := s.enrootLibrary(settings)
	exported := settings.Exported(enroot.Installation{LibraryPath: lib, SysconfPath: dir,
		Home: a.Home, Processors: runtime.NumCPU()})
	who := []string{"HOME=" + a.Home, "USER=" + a.Name, "LOGNAME=" + a.Name, "SHELL=" + a.Shell}
	identity := who
	if eu.remapped {
		identity = []string{"HOME=/root", "USER=root", "LOGNAME=" + a.Name, "SHELL=/bin/sh"}
	}
	return &container.EnrootConfig{Dir: dir, Settings: exported, Identity: identity,
		HookEnv: append(who, "PATH="+hookPATH(lib), "NVIDIA_VISIBLE_DEVICES=void"),
		Hooks:   !h.DisableHooks, RCLocal: true, Fstab: true}
}

// hookPATH is the host PATH hooks run with, Enroot's own bin directory first (the
// helpers the stock hooks call, enroot-mount among them, are installed beside its
// library: <prefix>/lib/enroot and <prefix>/bin).
func hookPATH(lib string) string {
	if lib == "" {
		return hookPath
	}
	bin := filepath.Join(filepath.Dir(filepath.Dir(lib)), "bin")
	if slices.Contains(filepath.SplitList(hookPath), bin) {
		return hookPath
	}
	return bin + ":" + hookPath
}

// enrootLibrary is ENROOT_LIBRARY_PATH: Enroot's configuration, else ours.
func (s *Server) enrootLibrary(settings enroot.Settings) string {
	if v, ok := settings["ENROOT_LIBRARY_PATH"]; ok {
		return v
	}
	return s.cfg.EnrootLibraryPath()
}

// readonlyPodFiles binds the pod's hosts, resolv.conf and hostname read-only, as
// Enroot's 20-config.fstab binds the host's, when the root is read-only.
func readonlyPodFiles(spec *specs.Spec, pod *podRecord) {
	files := map[string]bool{"/etc/hosts": true, "/etc/resolv.conf": true, "/etc/hostname": true}
	for i, m := range spec.Mounts {
		if files[m.Destination] && filepath.Dir(m.Source) == pod.Sandbox.Dir {
			spec.Mounts[i].Options = append(slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "rw" }), "ro")
		}
	}
}

// withoutGID drops devpts's gid= option: the tty group is not mapped in a user
// namespace of one ID.
func withoutGID(mounts []specs.Mount) []specs.Mount {
	for i, m := range mounts {
		if m.Type == "devpts" {
			mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return strings.HasPrefix(o, "gid=") })
		}
	}
	return mounts
}
