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

// hostPath is the PATH hooks run with: they run before the root switch, on the
// host's files.
const hostPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// EnrootConfig applies a node's Enroot configuration to a container as `enroot start`
// does: mounts.d, hooks.d with Enroot's hook contract, and /etc/rc.local.
type EnrootConfig struct {
	Dir      string   `json:"dir"`      // the Enroot configuration directory
	Settings []string `json:"settings"` // ENROOT_* and friends, NAME=value
	Hooks    bool     `json:"hooks"`    // run hooks.d/*.sh
	RCLocal  bool     `json:"rc_local"` // source the image's /etc/rc.local before the command
}

// managedTargets are set up by the runtime itself; mounts.d entries for them (Enroot's
// shipped 10-system.fstab binds the host's /proc, for one) are skipped, since a pod's
// container has its own PID namespace and pod files.
var managedTargets = map[string]bool{"/proc": true, "/sys": true, "/dev": true, "/dev/pts": true,
	"/dev/shm": true, "/dev/mqueue": true, "/etc/hosts": true, "/etc/hostname": true, "/etc/resolv.conf": true}

// applyEnroot mounts mounts.d, runs the hooks and applies what they appended to
// $ENROOT_MOUNTS and $ENROOT_ENVIRON; it returns the container's environment.
func applyEnroot(rootfd int, rootfs, bundle string, cfg *EnrootConfig, env []string) ([]string, error) {
	known := append(append([]string{"ENROOT_ROOTFS=" + rootfs}, cfg.Settings...), env...)
	lookup := func(name string) (string, bool) { return enroot.Lookup(known, name) }
	for _, f := range enroot.DropIns(cfg.Dir, "mounts.d", ".fstab") {
		entries, err := readFstab(f, lookup)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if managedTargets[filepath.Clean(e.Target)] {
				continue
			}
			if err := applyMountEntry(rootfd, rootfs, e); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
		}
	}
	if !cfg.Hooks {
		return env, nil
	}
	environ, mounts := filepath.Join(bundle, "environ"), filepath.Join(bundle, "mounts")
	if err := os.WriteFile(environ, []byte(strings.Join(env, "\n")+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write hook environment: %w", err)
	}
	if err := os.WriteFile(mounts, nil, 0o600); err != nil {
		return nil, fmt.Errorf("write hook mounts: %w", err)
	}
	pid, err := os.Readlink("/proc/self") // the host's procfs: our PID on the host
	if err != nil {
		return nil, fmt.Errorf("find own pid: %w", err)
	}
	hookEnv := append(append(append([]string{}, env...), cfg.Settings...),
		"ENROOT_ROOTFS="+rootfs, "ENROOT_PID="+pid, "ENROOT_ENVIRON="+environ, "ENROOT_MOUNTS="+mounts, hostPath)
	for _, hook := range enroot.Hooks(cfg.Dir) {
		if err := runHook(hook, hookEnv); err != nil {
			return nil, err
		}
	}
	entries, err := readFstab(mounts, lookup)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := applyMountEntry(rootfd, rootfs, e); err != nil {
			return nil, fmt.Errorf("$ENROOT_MOUNTS: %w", err)
		}
	}
	f, err := os.Open(environ)
	if err != nil {
		return nil, fmt.Errorf("read hook environment: %w", err)
	}
	defer f.Close()
	appended, err := enroot.ParseEnviron(f, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, fmt.Errorf("read hook environment: %w", err)
	}
	return enroot.MergeEnv(nil, appended), nil
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
