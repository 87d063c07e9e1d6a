package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/enroot/sandbox"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/atomicfile"
)

// recordVersion is the version of pod and container records written today.
const recordVersion = 1

// Pod states in records.
const (
	podReady    = "ready"
	podNotReady = "notready"
)

// Container states in records.
const (
	containerCreated = "created"
	containerRunning = "running"
	containerExited  = "exited"
)

// podRecord is a pod sandbox as stored under root/records/pods.
type podRecord struct {
	Version   int             `json:"version"`
	ID        string          `json:"id"`
	Config    json.RawMessage `json:"config"` // protojson PodSandboxConfig
	Handler   string          `json:"handler"`
	State     string          `json:"state"`
	CreatedAt time.Time       `json:"created_at"`
	Sandbox   sandbox.Sandbox `json:"sandbox"`
	IPs       []string        `json:"ips,omitempty"`
	Networked bool            `json:"networked"` // CNI ADD succeeded and DEL has not run
	// CgroupParents are the cgroups its containers' creates made above their own
	// (the pod's cgroup parent, for one): removed with its last container.
	CgroupParents []string `json:"cgroup_parents,omitempty"`

	config *runtimeapi.PodSandboxConfig
}

// containerRecord is a container as stored under root/records/containers.
type containerRecord struct {
	Version    int             `json:"version"`
	ID         string          `json:"id"`
	PodID      string          `json:"pod_id"`
	Config     json.RawMessage `json:"config"` // protojson ContainerConfig
	ImageID    string          `json:"image_id"`
	ImageRef   string          `json:"image_ref"` // repo digest, else the ID
	State      string          `json:"state"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
	ExitCode   int32           `json:"exit_code"`
	Reason     string          `json:"reason,omitempty"`
	Message    string          `json:"message,omitempty"`
	LogPath    string          `json:"log_path,omitempty"`
	CgroupPath string          `json:"cgroup_path"`
	// Cpuset is the CPU set the container is pinned to, empty when it is not.
	Cpuset string `json:"cpuset,omitempty"`
	// CpusetAuto: the container is not pinned; Cpuset only keeps it off the CPUs
	// Slurm jobs hold.
	CpusetAuto bool `json:"cpuset_auto,omitempty"`
	// CgroupParents are ancestors of CgroupPath this container's create made.
	CgroupParents []string `json:"cgroup_parents,omitempty"`
	StopSignal    string   `json:"stop_signal,omitempty"`
	UID           int64    `json:"uid"`
	GID           int64    `json:"gid"`
	Groups        []int64  `json:"groups,omitempty"`
	// ImageVolumes are the IDs of the images mounted as volumes, one use each.
	ImageVolumes []string `json:"image_volumes,omitempty"`

	config *runtimeapi.ContainerConfig
}

// records keeps pods and containers in memory and on disk. Each record file is
// replaced atomically.
type records struct {
	dir        string
	mu         sync.Mutex
	pods       map[string]*podRecord
	containers map[string]*containerRecord
	locks      sync.Map // id -> *sync.Mutex, serialising lifecycle calls on one object
}

func newRecords(dir string) (*records, error) {
	r := &records{dir: dir, pods: map[string]*podRecord{}, containers: map[string]*containerRecord{}}
	for _, d := range []string{r.podDir(), r.containerDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create record directory: %w", err)
		}
	}
	return r, nil
}

func (r *records) podDir() string       { return filepath.Join(r.dir, "pods") }
func (r *records) containerDir() string { return filepath.Join(r.dir, "containers") }

// lock serialises lifecycle operations on one pod or container.
func (r *records) lock(id string) func() {
	m, _ := r.locks.LoadOrStore(id, &sync.Mutex{})
	m.(*sync.Mutex).Lock()
	return m.(*sync.Mutex).Unlock
}

func (r *records) savePod(p *podRecord) error {
	p.Version = recordVersion
	if err := atomicfile.WriteJSON(filepath.Join(r.podDir(), p.ID+".json"), p); err != nil {
		return err
	}
	r.mu.Lock()
	r.pods[p.ID] = p
	r.mu.Unlock()
	return nil
}

func (r *records) saveContainer(c *containerRecord) error {
	c.Version = recordVersion
	if err := atomicfile.WriteJSON(filepath.Join(r.containerDir(), c.ID+".json"), c); err != nil {
		return err
	}
	r.mu.Lock()
	r.containers[c.ID] = c
	r.mu.Unlock()
	return nil
}

func (r *records) deletePod(id string) error {
	if err := os.Remove(filepath.Join(r.podDir(), id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pod record: %w", err)
	}
	r.mu.Lock()
	delete(r.pods, id)
	r.mu.Unlock()
	return nil
}

func (r *records) deleteContainer(id string) error {
	if err := os.Remove(filepath.Join(r.containerDir(), id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove container record: %w", err)
	}
	r.mu.Lock()
	delete(r.containers, id)
	r.mu.Unlock()
	return nil
}

// pod finds a pod by ID or unique ID prefix.
func (r *records) pod(id string) (*podRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return lookup(r.pods, id, "pod sandbox")
}

// container finds a container by ID or unique ID prefix.
func (r *records) container(id string) (*containerRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return lookup(r.containers, id, "container")
}

func lookup[T any](m map[string]T, id, what string) (T, error) {
	var zero T
	if id == "" {
		return zero, fmt.Errorf("%s ID is empty: %w", what, errdefs.ErrInvalidArgument)
	}
	if v, ok := m[id]; ok {
		return v, nil
	}
	var found []string
	for k := range m {
		if strings.HasPrefix(k, id) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 1:
		return m[found[0]], nil
	case 0:
		return zero, fmt.Errorf("%s %q: %w", what, id, errdefs.ErrNotFound)
	default:
		return zero, fmt.Errorf("%s ID prefix %q matches %d: %w", what, id, len(found), errdefs.ErrInvalidArgument)
	}
}

func (r *records) allPods() []*podRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*podRecord, 0, len(r.pods))
	for _, p := range r.pods {
		out = append(out, p)
	}
	return out
}

func (r *records) allContainers() []*containerRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*containerRecord, 0, len(r.containers))
	for _, c := range r.containers {
		out = append(out, c)
	}
	return out
}

func (r *records) containersOf(podID string) []*containerRecord {
	var out []*containerRecord
	for _, c := range r.allContainers() {
		if c.PodID == podID {
			out = append(out, c)
		}
	}
	return out
}

// load reads every record; a record that cannot be read stops the daemon rather than
// silently losing a pod.
func (r *records) load() error {
	pods, err := readRecords[podRecord](r.podDir())
	if err != nil {
		return err
	}
	for _, p := range pods {
		p.config = &runtimeapi.PodSandboxConfig{}
		if err := protojson.Unmarshal(p.Config, p.config); err != nil {
			return fmt.Errorf("decode pod record %s: %w", p.ID, err)
		}
		r.pods[p.ID] = p
	}
	containers, err := readRecords[containerRecord](r.containerDir())
	if err != nil {
		return err
	}
	for _, c := range containers {
		c.config = &runtimeapi.ContainerConfig{}
		if err := protojson.Unmarshal(c.Config, c.config); err != nil {
			return fmt.Errorf("decode container record %s: %w", c.ID, err)
		}
		r.containers[c.ID] = c
	}
	return nil
}

func readRecords[T any](dir string) ([]*T, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	var out []*T
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			_ = os.Remove(path) // a write a crash interrupted
			continue
		}
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read record: %w", err)
		}
		var v struct {
			Version int `json:"version"`
		}
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("record %s is damaged: %w", path, err)
		}
		if v.Version != recordVersion {
			return nil, fmt.Errorf("record %s has version %d; this enroot-cri reads version %d", path, v.Version, recordVersion)
		}
		rec := new(T)
		if err := json.Unmarshal(data, rec); err != nil {
			return nil, fmt.Errorf("decode record %s: %w", path, err)
		}
		out = append(out, rec)
	}
	return out, nil
}
