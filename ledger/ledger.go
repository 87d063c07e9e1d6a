package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/internal/atomicfile"
)

// Holder kinds.
const (
	HolderPod   = "pod"   // a container of a pod, by container ID
	HolderSlurm = "slurm" // a Slurm job, by job ID
)

// Holder is who holds a device or CPUs.
type Holder struct {
	Kind  string    `json:"kind"`
	ID    string    `json:"id"`             // container ID or Slurm job ID
	Name  string    `json:"name,omitempty"` // namespace/pod/container, or the job's user
	Since time.Time `json:"since"`
}

func (h Holder) String() string {
	if h.Kind == HolderSlurm {
		return "Slurm job " + h.ID
	}
	if h.Name != "" {
		return fmt.Sprintf("container %s (%s)", shortID(h.ID), h.Name)
	}
	return "container " + shortID(h.ID)
}

func shortID(id string) string { return id[:min(len(id), 12)] }

// HeldError is a claim refused because another holder has a device.
type HeldError struct {
	UUID   string
	Holder Holder
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("GPU %s is held by %s since %s", e.UUID, e.Holder, e.Holder.Since.Format(time.RFC3339))
}

// Claims is the ledger's content.
type Claims struct {
	Version int               `json:"version"`
	Devices map[string]Holder `json:"devices"`        // by GPU or MIG UUID
	CPUs    map[string][]int  `json:"cpus,omitempty"` // Slurm job ID → the CPUs of its cpuset
	Jobs    map[string]Holder `json:"jobs,omitempty"` // Slurm jobs that hold CPUs
}

// Ledger is the node's record of who holds which GPU, slice and Slurm CPUs. Every
// change happens under an exclusive flock on the file next to it, so the daemon and
// Slurm's prolog and epilog can change it at once.
type Ledger struct {
	Path string
}

// update runs fn on the claims under the lock and saves them if fn succeeds.
func (l *Ledger) update(fn func(*Claims) error) error {
	unlock, err := l.lock()
	if err != nil {
		return err
	}
	defer unlock()
	c, err := l.read()
	if err != nil {
		return err
	}
	if err := fn(c); err != nil {
		return err
	}
	return atomicfile.WriteJSON(l.Path, c)
}

func (l *Ledger) lock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(l.Path), 0o700); err != nil {
		return nil, fmt.Errorf("GPU ledger: %w", err)
	}
	f, err := os.OpenFile(l.Path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("GPU ledger: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock GPU ledger: %w", err)
	}
	return func() { f.Close() }, nil
}

func (l *Ledger) read() (*Claims, error) {
	c := &Claims{Version: 1, Devices: map[string]Holder{}, CPUs: map[string][]int{}, Jobs: map[string]Holder{}}
	data, err := os.ReadFile(l.Path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read GPU ledger: %w", err)
	}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("GPU ledger %s is damaged: %w", l.Path, err)
	}
	if c.Devices == nil {
		c.Devices = map[string]Holder{}
	}
	if c.CPUs == nil {
		c.CPUs = map[string][]int{}
	}
	if c.Jobs == nil {
		c.Jobs = map[string]Holder{}
	}
	return c, nil
}

// ModTime is when the ledger was last written; the zero time when it never was.
func (l *Ledger) ModTime() (time.Time, error) {
	st, err := os.Stat(l.Path)
	if errors.Is(err, os.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("GPU ledger: %w", err)
	}
	return st.ModTime(), nil
}

// Read returns the claims.
func (l *Ledger) Read() (*Claims, error) {
	unlock, err := l.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return l.read()
}

// Claim gives h every device in uuids, or none of them: a device another holder has
// fails the claim with a *HeldError. Claiming what h already holds is not an error.
func (l *Ledger) Claim(uuids []string, h Holder) error {
	return l.update(func(c *Claims) error {
		for _, u := range uuids {
			if cur, ok := c.Devices[u]; ok && (cur.Kind != h.Kind || cur.ID != h.ID) {
				return &HeldError{UUID: u, Holder: cur}
			}
		}
		for _, u := range uuids {
			if _, ok := c.Devices[u]; !ok {
				c.Devices[u] = h
			}
		}
		return nil
	})
}

// Allocate claims n devices for h from candidates (in order), skipping held ones; it
// fails when fewer than n are free.
func (l *Ledger) Allocate(candidates []string, n int, h Holder) ([]string, error) {
	var got []string
	err := l.update(func(c *Claims) error {
		got = nil
		for _, u := range candidates {
			if _, held := c.Devices[u]; !held && len(got) < n {
				got = append(got, u)
			}
		}
		if len(got) < n {
			return fmt.Errorf("%d of %d matching GPUs are free", len(got), n)
		}
		for _, u := range got {
			c.Devices[u] = h
		}
		return nil
	})
	return got, err
}

// ClaimCPUs records the CPUs a Slurm job's cpuset holds.
func (l *Ledger) ClaimCPUs(h Holder, cpus []int) error {
	return l.update(func(c *Claims) error {
		c.CPUs[h.ID] = slices.Clone(cpus)
		c.Jobs[h.ID] = h
		return nil
	})
}

// Release drops every claim of the holder kind and ID; it returns the devices freed.
func (l *Ledger) Release(kind, id string) ([]string, error) {
	var freed []string
	err := l.update(func(c *Claims) error {
		for u, h := range c.Devices {
			if h.Kind == kind && h.ID == id {
				freed = append(freed, u)
				delete(c.Devices, u)
			}
		}
		if kind == HolderSlurm {
			delete(c.CPUs, id)
			delete(c.Jobs, id)
		}
		return nil
	})
	sort.Strings(freed)
	return freed, err
}

// Reconcile drops the pod claims whose container keep does not know, as after a
// restart: a claim outlives its container only if the daemon died between the two.
func (l *Ledger) Reconcile(keep func(containerID string) bool) ([]string, error) {
	var dropped []string
	err := l.update(func(c *Claims) error {
		for u, h := range c.Devices {
			if h.Kind == HolderPod && !keep(h.ID) {
				dropped = append(dropped, u)
				delete(c.Devices, u)
			}
		}
		return nil
	})
	return dropped, err
}

// SlurmCPUs is every CPU held by a Slurm job.
func (c *Claims) SlurmCPUs() map[int]string {
	out := map[int]string{}
	for job, cpus := range c.CPUs {
		for _, cpu := range cpus {
			out[cpu] = job
		}
	}
	return out
}

// Summary lists the claims one per line, for `enroot-cri gpus`.
func (c *Claims) Summary() string {
	var lines []string
	for u, h := range c.Devices {
		lines = append(lines, fmt.Sprintf("%s\t%s", u, h))
	}
	for job, cpus := range c.CPUs {
		lines = append(lines, fmt.Sprintf("CPUs %v\tSlurm job %s", cpus, job))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
