package container

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/internal/inroot"
)

// hookTimeout bounds one Enroot hook.
const hookTimeout = 2 * time.Minute

// EnrootConfig applies a node's Enroot configuration to a container as `enroot start`
// does: mounts.d, hooks.d with Enroot's hook contract, the image's /etc/fstab and
// /etc/rc.local, and the login identity.
type EnrootConfig struct {
	Dir string `json:"dir"` // the Enroot configuration directory
	// Settings are the ENROOT_* configuration Enroot exports to hooks, its defaults
	// included (ENROOT_LIBRARY_PATH among them), NAME=value.
	Settings []string `json:"settings"`
	// HookEnv is the rest of a hook's environment, decided by the node and the
	// runtime, never by the pod: the user's HOME, USER, LOGNAME and SHELL from the
	// host's user database, a host PATH that finds Enroot's helpers, and the
	// variables the runtime decides (NVIDIA_VISIBLE_DEVICES from the GPU binding).
	HookEnv []string `json:"hook_env"`
	// Identity are HOME, USER, LOGNAME and SHELL the command gets where neither the
	// image, the pod nor a hook sets them (enroot-switchroot's login).
	Identity []string `json:"identity,omitempty"`
	Hooks    bool     `json:"hooks"`    // run hooks.d/*.sh
	RCLocal  bool     `json:"rc_local"` // source the image's /etc/rc.local before the command
	Fstab    bool     `json:"fstab"`    // mount the image's /etc/fstab (its volumes)
}

// managedTargets are set up by the runtime itself; mounts.d entries for them (Enroot's
// shipped 10-system.fstab binds the host's /proc, for one) are skipped, since a pod's
// container has its own PID namespace and pod files (docs/parity.md).
var managedTargets = map[string]bool{"/proc": true, "/sys": true, "/dev": true, "/dev/pts": true,
	"/dev/shm": true, "/dev/mqueue": true, "/etc/hosts": true, "/etc/hostname": true, "/etc/resolv.conf": true}

// enrootRun is one container's application of its Enroot configuration.
type enrootRun struct {
	rootfd        int
	rootfs, stage string
	cfg           *EnrootConfig
	lookup        func(string) (string, bool) // for ${VAR} in fstab files: node values only
}

// applyEnroot mounts mounts.d, runs the hooks, applies what they appended to
// $ENROOT_MOUNTS and $ENROOT_ENVIRON and the image's /etc/fstab, and returns the
// container's environment. stage is a private directory for the hooks' files.
func applyEnroot(rootfd int, rootfs, stage string, cfg *EnrootConfig, env []string) ([]string, error) {
	known := append(append([]string{"ENROOT_ROOTFS=" + rootfs}, cfg.Settings...), cfg.HookEnv...)
	r := &enrootRun{rootfd: rootfd, rootfs: rootfs, stage: stage, cfg: cfg,
		lookup: func(name string) (string, bool) { return enroot.Lookup(known, name) }}
	site, err := r.siteMounts()
	if err != nil {
		return nil, err
	}
	if err := r.mount(site, true, "mounts.d"); err != nil {
		return nil, err
	}
	if cfg.Hooks {
		if env, err = r.runHooks(env); err != nil {
			return nil, err
		}
	}
	if err := r.mount(site, false, "mounts.d"); err != nil {
		return nil, err
	}
	if cfg.Fstab {
		if err := r.imageFstab(); err != nil {
			return nil, err
		}
	}
	for _, kv := range cfg.Identity {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := enroot.Lookup(env, name); !ok {
			env = append(env, kv)
		}
	}
	return env, nil
}

// siteMounts reads mounts.d, less the targets the runtime manages.
func (r *enrootRun) siteMounts() ([]enroot.MountEntry, error) {
	var out []enroot.MountEntry
	for _, f := range enroot.DropIns(r.cfg.Dir, "mounts.d", ".fstab") {
		entries, err := readFstab(f, r.lookup)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !managedTargets[filepath.Clean(strings.TrimPrefix(e.Target, r.rootfs))] {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// mount applies the entries of pass -1 (early) or the others, as Enroot does before
// and after its hooks.
func (r *enrootRun) mount(entries []enroot.MountEntry, early bool, from string) error {
	for _, e := range entries {
		if (e.Pass == -1) != early {
			continue
		}
		if err := applyMountEntry(r.rootfd, r.rootfs, e); err != nil {
			return fmt.Errorf("%s: %w", from, err)
		}
	}
	return nil
}

// runHooks runs hooks.d with Enroot's contract, then mounts what they appended to
// $ENROOT_MOUNTS and returns the environment with what they appended to
// $ENROOT_ENVIRON. The hooks run as this process does: inside the container's user
// namespace, as its user, with Enroot's seccomp filter.
func (r *enrootRun) runHooks(env []string) ([]string, error) {
	environ, mounts := filepath.Join(r.stage, "environment"), filepath.Join(r.stage, "fstab")
	tmp := filepath.Join(r.stage, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("create hook temporary directory: %w", err)
	}
	// Enroot's environment file has one NAME=value per line: a value with a newline
	// cannot travel through it (it would become variables of its own). Such values
	// stay aside and come back unchanged.
	kept, aside := splitMultiline(env)
	if err := os.WriteFile(environ, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write hook environment: %w", err)
	}
	if err := os.WriteFile(mounts, nil, 0o600); err != nil {
		return nil, fmt.Errorf("write hook mounts: %w", err)
	}
	pid, err := os.Readlink("/proc/self") // the host's procfs: our PID on the host
	if err != nil {
		return nil, fmt.Errorf("find own pid: %w", err)
	}
	hookEnv := enroot.MergeEnv(enroot.MergeEnv(r.cfg.Settings, r.cfg.HookEnv), []string{
		"ENROOT_ROOTFS=" + r.rootfs, "ENROOT_PID=" + pid, "ENROOT_ENVIRON=" + environ, "ENROOT_MOUNTS=" + mounts,
		"ENROOT_RUNTIME_PATH=" + r.stage, "TMPDIR=" + tmp})
	for _, hook := range enroot.Hooks(r.cfg.Dir) {
		if err := runHook(hook, hookEnv); err != nil {
			return nil, err
		}
	}
	entries, err := readFstab(mounts, r.lookup)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := applyMountEntry(r.rootfd, r.rootfs, e); err != nil {
			return nil, fmt.Errorf("$ENROOT_MOUNTS: %w", err)
		}
	}
	f, err := os.Open(environ)
	if err != nil {
		return nil, fmt.Errorf("read hook environment: %w", err)
	}
	defer f.Close()
	back, err := enroot.ParseEnviron(f, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, fmt.Errorf("read hook environment: %w", err)
	}
	return enroot.MergeEnv(back, aside), nil
}

// splitMultiline separates the variables whose values hold a newline.
func splitMultiline(env []string) (kept, aside []string) {
	for _, kv := range env {
		if strings.ContainsAny(kv, "\n\r") {
			aside = append(aside, kv)
		} else {
			kept = append(kept, kv)
		}
	}
	return kept, aside
}

// imageFstab mounts the image's /etc/fstab, as Enroot's import writes it for the
// image's volumes (`${ENROOT_ROOTFS}/VOL VOL none x-create=dir,bind,…`). The file is
// the image author's: only binds of the image's own paths and tmpfs are allowed, and
// sources resolve inside the root.
func (r *enrootRun) imageFstab() error {
	data, err := inroot.ReadFile(r.rootfs, "/etc/fstab")
	if err != nil {
		return nil // no fstab
	}
	lookup := func(name string) (string, bool) {
		if name == "ENROOT_ROOTFS" {
			return r.rootfs, true
		}
		return "", false
	}
	entries, err := enroot.ParseFstab(bytes.NewReader(data), lookup)
	if err != nil {
		return fmt.Errorf("image /etc/fstab: %w", err)
	}
	for _, e := range entries {
		if err := r.imageMount(e); err != nil {
			return fmt.Errorf("image /etc/fstab: %s %s: %w", e.Source, e.Target, err)
		}
	}
	return nil
}

func (r *enrootRun) imageMount(e enroot.MountEntry) error {
	if e.Type == "tmpfs" && !e.Move && !e.Detach {
		return applyMountEntry(r.rootfd, r.rootfs, e)
	}
	rel, inside := strings.CutPrefix(e.Source, r.rootfs+"/")
	if !inside || (e.Type != "none" && e.Type != "bind") || e.Move || e.Detach {
		return fmt.Errorf("an image may bind only its own paths (${ENROOT_ROOTFS}/…) or mount tmpfs")
	}
	if err := createTarget(r.rootfd, strings.TrimPrefix(e.Target, r.rootfs), e); err != nil && !e.NoFail {
		return err
	}
	src, err := inroot.OpenPath(r.rootfd, rel)
	if err != nil {
		if e.NoFail {
			return nil
		}
		return err
	}
	defer unix.Close(src)
	e.Source = inroot.ProcPath(src)
	return applyMountEntry(r.rootfd, r.rootfs, e)
}

func readFstab(path string, lookup func(string) (string, bool)) ([]enroot.MountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	entries, err := enroot.ParseFstab(f, lookup)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return entries, nil
}

// runHook runs one hook; its failure names the hook and carries its output.
func runHook(hook string, env []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, hook)
	cmd.Env = env
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 4000 {
			msg = msg[len(msg)-4000:]
		}
		return fmt.Errorf("enroot hook %s failed (%w): %s", filepath.Base(hook), err, msg)
	}
	return nil
}

// applyMountEntry applies one Enroot fstab entry inside the root.
func applyMountEntry(rootfd int, rootfs string, e enroot.MountEntry) error {
	target := strings.TrimPrefix(e.Target, rootfs)
	err := mountEntry(rootfd, target, e)
	if err != nil && !e.NoFail {
		return fmt.Errorf("mount %s on %s: %w", e.Source, target, err)
	}
	return nil
}

func mountEntry(rootfd int, target string, e enroot.MountEntry) error {
	if e.Detach {
		fd, err := inroot.OpenPath(rootfd, target)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Unmount(inroot.ProcPath(fd), unix.MNT_DETACH)
	}
	if err := createTarget(rootfd, target, e); err != nil {
		return err
	}
	if e.Move {
		fd, err := inroot.OpenPath(rootfd, target)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Mount(e.Source, inroot.ProcPath(fd), "", unix.MS_MOVE, "")
	}
	typ := e.Type
	if typ == "none" {
		typ = "bind"
	}
	return mountInto(rootfd, specs.Mount{Destination: target, Source: e.Source, Type: typ, Options: e.Options}, -1)
}

// createTarget honours x-create.
func createTarget(rootfd int, target string, e enroot.MountEntry) error {
	kind := e.Create
	if kind == "auto" {
		kind = "dir"
		if st, err := os.Stat(e.Source); err == nil && !st.IsDir() {
			kind = "file"
		}
	}
	var fd int
	var err error
	switch kind {
	case "dir":
		fd, err = inroot.MkdirAll(rootfd, target, 0o755)
	case "file":
		fd, err = inroot.CreateFile(rootfd, target)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// withRCLocal wraps the command so that the image's /etc/rc.local is sourced first,
// as Enroot's /etc/rc does, when it holds anything but comments and a shell exists.
func withRCLocal(args []string) []string {
	data, err := os.ReadFile("/etc/rc.local")
	if err != nil || !hasCommands(data) {
		return args
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		return args
	}
	return append([]string{"/bin/sh", "-c", `. /etc/rc.local && exec "$@"`, "rc.local"}, args...)
}

func hasCommands(script []byte) bool {
	for _, line := range strings.Split(string(script), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}
