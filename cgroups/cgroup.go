package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	cg "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Root is where the cgroup filesystems are mounted.
const Root = "/sys/fs/cgroup"

// Cgroup is one container's cgroup.
type Cgroup struct {
	path string
	// Created are the ancestors Create made because they did not exist, deepest
	// last; RemoveAncestors removes them once empty.
	Created []string
	v1      cgroup1.Cgroup
	v2      *cgroup2.Manager
}

// unified reports whether the host runs a pure cgroup v2 hierarchy.
func unified() bool { return cg.Mode() == cg.Unified }

// Create creates the cgroup at path (a path relative to the cgroup root, such as
// ContainerPath returns) with resources applied.
func Create(path string, resources *specs.LinuxResources) (*Cgroup, error) {
	if resources == nil {
		resources = &specs.LinuxResources{}
	}
	created := MissingAncestors(path)
	if unified() {
		m, err := cgroup2.NewManager(Root, path, v2Resources(resources))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		return &Cgroup{path: path, v2: m, Created: created}, nil
	}
	c, err := cgroup1.New(cgroup1.StaticPath(path), resources)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", path, err)
	}
	return &Cgroup{path: path, v1: c, Created: created}, nil
}

// v2Resources is resources in cgroup v2 terms, with two differences from
// cgroup2.ToResources: the soft limit (Reservation) is memory.high, as Slurm's cgroup/v2
// plugin sets it, and the device rules are kept for the eBPF device filter.
func v2Resources(resources *specs.LinuxResources) *cgroup2.Resources {
	out := cgroup2.ToResources(resources)
	if m := resources.Memory; m != nil && m.Reservation != nil && out.Memory != nil {
		out.Memory.Low, out.Memory.High = nil, m.Reservation
	}
	out.Devices = resources.Devices
	return out
}

// hierarchies are the directories a cgroup path lives in: each v1 controller's, or the
// unified one.
func hierarchies() []string {
	if unified() {
		return []string{Root}
	}
	dirs, _ := filepath.Glob(filepath.Join(Root, "*"))
	var out []string
	for _, d := range dirs {
		if st, err := os.Lstat(d); err == nil && st.IsDir() && filepath.Base(d) != "unified" {
			out = append(out, d)
		}
	}
	return out
}

// MissingAncestors lists the ancestors of path that do not exist yet, top first: those
// Create would make.
func MissingAncestors(path string) []string {
	probe := filepath.Join(Root, "memory")
	if unified() {
		probe = Root
	}
	var missing []string
	for dir := filepath.Dir(path); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(probe, dir)); errors.Is(err, os.ErrNotExist) {
			missing = append([]string{dir}, missing...)
		}
	}
	return missing
}

// RemoveAncestors removes cgroups that Create made as ancestors (Created), deepest
// first, where they are empty; one still in use by another container stays.
func RemoveAncestors(created []string) {
	for i := len(created) - 1; i >= 0; i-- {
		for _, h := range hierarchies() {
			_ = os.Remove(filepath.Join(h, created[i])) // EBUSY while in use: leave it
		}
	}
}

// Handle is what is done to one cgroup: *Cgroup on the host; a caller's tests may
// have fakes.
type Handle interface {
	HasProcesses() bool
	Pids() ([]int, error)
	Signal(pid int, sig syscall.Signal) (sent bool, err error)
	KillAll(timeout time.Duration) error
	WaitEmpty(timeout time.Duration) error
	Update(resources *specs.LinuxResources) error
	Stats() (Stats, error)
	OOMKills() int
	Delete() error
}

var _ Handle = (*Cgroup)(nil)

// Load opens an existing cgroup; a missing one is os.ErrNotExist.
func Load(path string) (*Cgroup, error) {
	if unified() {
		m, err := cgroup2.Load(path)
		if err != nil {
			return nil, fmt.Errorf("load cgroup %s: %w", path, err)
		}
		return &Cgroup{path: path, v2: m}, nil
	}
	c, err := cgroup1.Load(cgroup1.StaticPath(path))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("load cgroup %s: %w", path, os.ErrNotExist)
		}
		return nil, fmt.Errorf("load cgroup %s: %w", path, err)
	}
	return &Cgroup{path: path, v1: c}, nil
}

// Path is the cgroup's path relative to the cgroup root.
func (c *Cgroup) Path() string { return c.path }

// Add moves process pid into the cgroup.
func (c *Cgroup) Add(pid int) error {
	var err error
	if c.v2 != nil {
		err = c.v2.AddProc(uint64(pid))
	} else {
		err = c.v1.Add(cgroup1.Process{Pid: pid})
	}
	if err != nil {
		return fmt.Errorf("add process %d to cgroup %s: %w", pid, c.path, err)
	}
	return nil
}

// Pids lists the processes in the cgroup.
func (c *Cgroup) Pids() ([]int, error) {
	var pids []int
	if c.v2 != nil {
		ps, err := c.v2.Procs(true)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			pids = append(pids, int(p))
		}
		return pids, nil
	}
	ps, err := c.v1.Processes(cgroup1.Freezer, true)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		pids = append(pids, p.Pid)
	}
	return pids, nil
}

// KillAll sends SIGKILL to every process in the cgroup, frozen first so that none can
// fork away, and waits until they are gone (up to timeout).
func (c *Cgroup) KillAll(timeout time.Duration) error {
	if c.v2 != nil {
		if err := c.v2.Kill(); err != nil {
			return fmt.Errorf("kill cgroup %s: %w", c.path, err)
		}
	} else {
		_ = c.v1.Freeze()
		pids, err := c.Pids()
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = c.v1.Thaw()
		if err != nil {
			return fmt.Errorf("list cgroup %s: %w", c.path, err)
		}
	}
	return c.WaitEmpty(timeout)
}

// WaitEmpty waits until the cgroup holds no process (up to timeout).
func (c *Cgroup) WaitEmpty(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := c.Pids()
		if err != nil || len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has processes %v", c.path, pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Signal sends sig to pid if pid is in the cgroup (a PID read from a file may have
// been reused by another process since); false when it is not.
func (c *Cgroup) Signal(pid int, sig syscall.Signal) (bool, error) {
	pids, err := c.Pids()
	if err != nil {
		return false, fmt.Errorf("list cgroup %s: %w", c.path, err)
	}
	if pid <= 0 || !slices.Contains(pids, pid) {
		return false, nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, fmt.Errorf("signal %d: %w", pid, err)
	}
	return true, nil
}

// HasProcesses reports whether any process is in the cgroup; nil (no cgroup) has none.
func (c *Cgroup) HasProcesses() bool {
	if c == nil {
		return false
	}
	pids, err := c.Pids()
	return err == nil && len(pids) > 0
}

// OOMKills is how many processes the kernel's OOM killer ended in this cgroup.
func (c *Cgroup) OOMKills() int {
	var file, key string
	if c.v2 != nil {
		file, key = filepath.Join(Root, c.path, "memory.events"), "oom_kill"
	} else {
		file, key = filepath.Join(Root, "memory", c.path, "memory.oom_control"), "oom_kill"
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// Delete removes the cgroup, which must hold no process.
func (c *Cgroup) Delete() error {
	var err error
	if c.v2 != nil {
		err = c.v2.Delete()
	} else {
		err = c.v1.Delete()
	}
	if err != nil && len(ProcsFiles(c.path)) > 0 {
		return fmt.Errorf("remove cgroup %s: %w", c.path, err)
	}
	// Gone from every hierarchy: another remover (the kubelet removes a pod's cgroup
	// with what is left under it) took part of it while this one read it (ENODEV).
	return nil
}

// ProcsFiles are the cgroup.procs files of path in every hierarchy: a process that
// writes its PID into each joins the cgroup.
func ProcsFiles(path string) []string {
	var out []string
	for _, h := range hierarchies() {
		f := filepath.Join(h, path, "cgroup.procs")
		if _, err := os.Stat(f); err == nil {
			out = append(out, f)
		}
	}
	return out
}
