package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ImageMounts mounts each image's squashfs read-only once (kernel squashfs over a loop
// device) and shares it among the containers of that image: the mount goes when the
// last container using it is released. Creating a container therefore costs the same
// for a 10 MiB image and a 20 GiB one.
type ImageMounts struct {
	Dir  string // one mountpoint per image: Dir/<image hex>
	mu   sync.Mutex
	refs map[string]int
}

func (m *ImageMounts) dir(id string) string {
	return filepath.Join(m.Dir, strings.TrimPrefix(id, "sha256:"))
}

// Acquire returns the mountpoint of image id's squashfs, mounting it if no container
// uses it yet.
func (m *ImageMounts) Acquire(ctx context.Context, id, squashfs string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs == nil {
		m.refs = map[string]int{}
	}
	dir := m.dir(id)
	if !isMountpoint(dir) { // not yet, or no longer (after a reboot)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("create image mountpoint: %w", err)
		}
		cmd := exec.CommandContext(ctx, "mount", "-t", "squashfs", "-o", "loop,ro,nodev", squashfs, dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("mount squashfs %s: %w: %s", squashfs, err, strings.TrimSpace(out.String()))
		}
	}
	m.refs[id]++
	return dir, nil
}

// Release drops one use of image id and unmounts it after the last.
func (m *ImageMounts) Release(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs[id] > 1 {
		m.refs[id]--
		return nil
	}
	delete(m.refs, id)
	return unmountDir(m.dir(id))
}

// Recover sets the use counts after a restart (inUse: image ID to number of
// containers) and unmounts images no container uses.
func (m *ImageMounts) Recover(inUse map[string]int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refs = map[string]int{}
	for id, n := range inUse {
		if n > 0 {
			m.refs[id] = n
		}
	}
	entries, err := os.ReadDir(m.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list image mounts: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if m.refs["sha256:"+e.Name()] == 0 {
			errs = append(errs, unmountDir(filepath.Join(m.Dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// InUse reports whether a container uses image id.
func (m *ImageMounts) InUse(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.refs[id] > 0
}

func unmountDir(dir string) error {
	if isMountpoint(dir) {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// isMountpoint reports whether dir is the root of a mount.
func isMountpoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	if st.Dev != parent.Dev {
		return true
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && unescapeMount(f[4]) == dir {
			return true
		}
	}
	return false
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
