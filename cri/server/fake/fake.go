package fake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/cri/network"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/enroot/sandbox"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/diskusage"
	"github.com/enroot-cri/enroot-cri/internal/pidwatch"
)

// Faults makes named calls fail: Fail("Engine.Create", err) makes the next calls of
// Engine.Create return err until Clear. Every fake of one Host shares it.
type Faults struct {
	mu   sync.Mutex
	errs map[string]error
}

// Fail makes op fail with err.
func (f *Faults) Fail(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.errs == nil {
		f.errs = map[string]error{}
	}
	f.errs[op] = err
}

// Clear makes every call succeed again.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = nil
}

func (f *Faults) check(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.errs[op]; err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Engine keeps containers in memory: Create records the configuration, Start makes
// the container run, a signal makes it exit with 128+signal.
type Engine struct {
	Faults *Faults
	mu     sync.Mutex
	ctrs   map[string]*engineContainer
	logs   map[string]bool
}

type engineContainer struct {
	cfg   *container.Config
	state container.State
}

// Config is the configuration a container was created with; nil for one the engine
// does not have.
func (e *Engine) Config(id string) *container.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.ctrs[id]; ok {
		return c.cfg
	}
	return nil
}

// IDs are the containers the engine has.
func (e *Engine) IDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.ctrs))
}

// Exit ends a running container with code, as its command ending would.
func (e *Engine) Exit(id string, code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.ctrs[id]; ok {
		c.exit(code)
	}
}

// exit records the container's first exit; its monitor ends with it.
func (c *engineContainer) exit(code int) {
	if c.state.Exit == nil {
		c.state.Exit = &container.Exit{Code: code, FinishedAt: time.Now()}
		c.state.ShimAlive = false
	}
}

// LoseMonitor ends a container's monitor without an exit record, as a monitor killed
// from outside would.
func (e *Engine) LoseMonitor(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.ctrs[id]; ok {
		c.state.ShimAlive = false
	}
}

// StartUnsaved releases a container's command as Start does, for a daemon that died
// before it saved the start.
func (e *Engine) StartUnsaved(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.ctrs[id]; ok {
		c.state.StartedAt = time.Now()
	}
}

// Create records the configuration of a new container, whose init waits for Start.
func (e *Engine) Create(_ context.Context, cfg *container.Config) (int, error) {
	if err := e.Faults.check("Engine.Create"); err != nil {
		return 0, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctrs == nil {
		e.ctrs, e.logs = map[string]*engineContainer{}, map[string]bool{}
	}
	if _, ok := e.ctrs[cfg.ID]; ok {
		return 0, fmt.Errorf("container %s exists: %w", cfg.ID, errdefs.ErrAlreadyExists)
	}
	pid := 1000 + len(e.ctrs)
	e.ctrs[cfg.ID] = &engineContainer{cfg: cfg, state: container.State{InitPid: pid, ShimAlive: true}}
	e.logs[cfg.ID] = true
	return pid, nil
}

func (e *Engine) get(id string) (*engineContainer, error) {
	c, ok := e.ctrs[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// Start makes a created container run.
func (e *Engine) Start(_ context.Context, id string) error {
	if err := e.Faults.check("Engine.Start"); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if !c.state.StartedAt.IsZero() {
		return fmt.Errorf("container %s was started: %w", id, errdefs.ErrFailedPrecondition)
	}
	c.state.StartedAt = time.Now()
	return nil
}

// State is the container's state as its monitor would record it.
func (e *Engine) State(id string) container.State {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.ctrs[id]; ok {
		return c.state
	}
	return container.State{}
}

// WatchShim reports nothing: a test ends containers with Exit and has the server
// look (its exit handling is what is tested, not pidfds).
func (e *Engine) WatchShim(_ *pidwatch.Watcher, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.ctrs[id]; !ok || !c.state.ShimAlive {
		return pidwatch.ErrGone
	}
	return nil
}

// Signal ends a started container with 128+sig; a created one only with SIGKILL.
func (e *Engine) Signal(id string, sig syscall.Signal) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.get(id)
	if err != nil {
		return err
	}
	// A created container's init waits for Start: only SIGKILL ends it.
	if !c.state.StartedAt.IsZero() || sig == syscall.SIGKILL {
		c.exit(128 + int(sig))
	}
	return nil
}

// Wait waits for the container's exit.
func (e *Engine) Wait(ctx context.Context, id string) (*container.Exit, error) {
	for {
		e.mu.Lock()
		c, err := e.get(id)
		var exit *container.Exit
		if err == nil {
			exit = c.state.Exit
		}
		e.mu.Unlock()
		if err != nil || exit != nil {
			return exit, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// Exec runs nothing and succeeds, unless made to fail.
func (e *Engine) Exec(_ context.Context, id string, _ container.ExecOptions) (int, error) {
	return 0, e.Faults.check("Engine.Exec")
}

// Attach attaches to nothing and succeeds, unless made to fail.
func (e *Engine) Attach(context.Context, string, io.Reader, io.Writer, io.Writer, <-chan container.TerminalSize) error {
	return e.Faults.check("Engine.Attach")
}

// ReopenLog succeeds, unless made to fail.
func (e *Engine) ReopenLog(context.Context, string) error { return e.Faults.check("Engine.ReopenLog") }

// Delete forgets the container.
func (e *Engine) Delete(id string) error {
	if err := e.Faults.check("Engine.Delete"); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.ctrs, id)
	return nil
}

// Forget forgets the container's monitor log.
func (e *Engine) Forget(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.logs, id)
	return nil
}

// Bundles lists the containers the engine has.
func (e *Engine) Bundles() ([]string, error) { return e.IDs(), nil }

// MonitorLogs lists the containers that have a monitor log.
func (e *Engine) MonitorLogs() ([]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.logs)), nil
}

// Bundle is where a bundle would be.
func (e *Engine) Bundle(id string) string { return "/fake/bundles/" + id }

// MonitorLog is where a monitor log would be; none is ever written.
func (e *Engine) MonitorLog(id string) string { return "/fake/monitors/" + id + ".log" }

// LayerUsage reports an empty writable layer.
func (e *Engine) LayerUsage(id string) (string, diskusage.Usage, error) {
	return "/fake/layers/" + id, diskusage.Usage{}, nil
}

// Mounts hands out image roots: the directory Roots names for an image, else an
// empty one it makes under Dir. It counts each image's users.
type Mounts struct {
	Faults *Faults
	Dir    string
	Roots  map[string]string
	mu     sync.Mutex
	users  map[string]int
}

// Users is how many containers use each image, those with none left out.
func (m *Mounts) Users() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for id, n := range m.users {
		if n != 0 {
			out[id] = n
		}
	}
	return out
}

// Acquire returns the image's root and counts one more user.
func (m *Mounts) Acquire(_ context.Context, id, _ string) (string, error) {
	if err := m.Faults.check("Mounts.Acquire"); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.users == nil {
		m.users = map[string]int{}
	}
	root, ok := m.Roots[id]
	if !ok {
		root = filepath.Join(m.Dir, strings.TrimPrefix(id, "sha256:"))
		if err := os.MkdirAll(root, 0o755); err != nil {
			return "", err
		}
	}
	m.users[id]++
	return root, nil
}

// Release counts one user less; more releases than acquires are an error.
func (m *Mounts) Release(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.users[id] <= 0 {
		return fmt.Errorf("image %s released more often than acquired", id)
	}
	m.users[id]--
	return nil
}

// Recover sets the counts of users.
func (m *Mounts) Recover(inUse map[string]int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users = maps.Clone(inUse)
	return nil
}

// Images is an image store in memory, found by ID or tag.
type Images struct {
	mu     sync.Mutex
	images []*image.Image
}

// Add puts img in the store.
func (s *Images) Add(img *image.Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images = append(s.images, img)
}

// Get finds an image by ID or tag.
func (s *Images) Get(ref string) (*image.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, img := range s.images {
		if img.ID == ref || slices.Contains(img.RepoTags, ref) {
			c := *img
			return &c, nil
		}
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// List lists the images.
func (s *Images) List() []*image.Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.images)
}

// Pull finds the image as Get does: nothing is downloaded.
func (s *Images) Pull(_ context.Context, ref string, _ image.PullOptions) (*image.Image, error) {
	return s.Get(ref)
}

// Remove removes an image by ID or tag.
func (s *Images) Remove(ref string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, img := range s.images {
		if img.ID == ref || slices.Contains(img.RepoTags, ref) {
			s.images = slices.Delete(s.images, i, i+1)
			return nil
		}
	}
	return nil
}

// Usage reports an empty store.
func (s *Images) Usage() (image.Usage, error) { return image.Usage{Mountpoint: "/fake/images"}, nil }

// Sandboxes makes a pod's directory and nothing else: no namespace, no holder.
type Sandboxes struct {
	Faults *Faults
	mu     sync.Mutex
	live   map[string]sandbox.Options
}

// Live are the directories of the sandboxes not destroyed, with their options.
func (s *Sandboxes) Live() map[string]sandbox.Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.live)
}

// Create makes the pod's directory and keeps its options.
func (s *Sandboxes) Create(dir string, opts sandbox.Options) (*sandbox.Sandbox, error) {
	if err := s.Faults.check("Sandboxes.Create"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == nil {
		s.live = map[string]sandbox.Options{}
	}
	s.live[dir] = opts
	return &sandbox.Sandbox{Dir: dir, Shm: filepath.Join(dir, "shm")}, nil
}

// Alive reports whether the sandbox was made and not destroyed.
func (s *Sandboxes) Alive(sb *sandbox.Sandbox) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.live[sb.Dir]
	return ok
}

// StopHolder does nothing: there is no holder.
func (s *Sandboxes) StopHolder(*sandbox.Sandbox) {}

// Destroy removes the pod's directory.
func (s *Sandboxes) Destroy(sb *sandbox.Sandbox) error {
	s.mu.Lock()
	delete(s.live, sb.Dir)
	s.mu.Unlock()
	return os.RemoveAll(sb.Dir)
}

// Leftover is a sandbox of dir alone.
func (s *Sandboxes) Leftover(dir string) *sandbox.Sandbox { return &sandbox.Sandbox{Dir: dir} }

// Network gives each pod an address of 10.88.0.0/16 and keeps which pods have one.
type Network struct {
	Faults *Faults
	mu     sync.Mutex
	next   int
	pods   map[string]network.Pod
}

// Attached are the pods that have an address, by ID.
func (n *Network) Attached() map[string]network.Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.pods)
}

// Ready succeeds, unless made to fail.
func (n *Network) Ready() error { return n.Faults.check("Network.Ready") }

// Setup gives the pod the next address.
func (n *Network) Setup(_ context.Context, p network.Pod) ([]string, error) {
	if err := n.Faults.check("Network.Setup"); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pods == nil {
		n.pods = map[string]network.Pod{}
	}
	n.next++
	n.pods[p.ID] = p
	return []string{fmt.Sprintf("10.88.%d.%d", n.next/250, n.next%250+2)}, nil
}

// Teardown takes the pod's address back.
func (n *Network) Teardown(_ context.Context, p network.Pod) error {
	if err := n.Faults.check("Network.Teardown"); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pods, p.ID)
	return nil
}

// Cgroups keeps cgroups in memory with the resources they were made with; a cgroup
// has processes from its container's start until it is killed.
type Cgroups struct {
	Faults *Faults
	mu     sync.Mutex
	cgs    map[string]*Cgroup
}

// Cgroup is one cgroup of Cgroups.
type Cgroup struct {
	owner     *Cgroups
	path      string
	Resources *specs.LinuxResources
	procs     bool
	oomKills  int
}

// Get is the cgroup at path; nil when there is none.
func (c *Cgroups) Get(path string) *Cgroup {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cgs[path]
}

// Paths are the cgroups that exist.
func (c *Cgroups) Paths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.cgs))
}

// SetProcesses says whether processes run in the cgroup at path.
func (c *Cgroups) SetProcesses(path string, running bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cg := c.cgs[path]; cg != nil {
		cg.procs = running
	}
}

// OOMKill records a kill by the OOM killer in the cgroup at path.
func (c *Cgroups) OOMKill(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cg := c.cgs[path]; cg != nil {
		cg.oomKills++
	}
}

// Create makes the cgroup and the ancestors it lacks.
func (c *Cgroups) Create(path string, res *specs.LinuxResources) (cgroups.Handle, []string, error) {
	if err := c.Faults.check("Cgroups.Create"); err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cgs == nil {
		c.cgs = map[string]*Cgroup{}
	}
	made := c.missingLocked(path)
	for _, a := range made {
		c.cgs[a] = &Cgroup{owner: c, path: a}
	}
	cg := &Cgroup{owner: c, path: path, Resources: res}
	c.cgs[path] = cg
	return cg, made, nil
}

// Load returns the cgroup at path; os.ErrNotExist when there is none.
func (c *Cgroups) Load(path string) (cgroups.Handle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cg, ok := c.cgs[path]; ok {
		return cg, nil
	}
	return nil, fmt.Errorf("load cgroup %s: %w", path, os.ErrNotExist)
}

// MissingAncestors lists the ancestors of path that do not exist, outermost first.
func (c *Cgroups) MissingAncestors(path string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.missingLocked(path)
}

func (c *Cgroups) missingLocked(path string) []string {
	var out []string
	for dir := filepath.Dir(path); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if _, ok := c.cgs[dir]; !ok {
			out = append([]string{dir}, out...)
		}
	}
	return out
}

// RemoveAncestors removes the made ancestors that have no children, deepest first.
func (c *Cgroups) RemoveAncestors(made []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(made) - 1; i >= 0; i-- {
		if !c.hasChildrenLocked(made[i]) {
			delete(c.cgs, made[i])
		}
	}
}

func (c *Cgroups) hasChildrenLocked(path string) bool {
	for p := range c.cgs {
		if strings.HasPrefix(p, path+"/") {
			return true
		}
	}
	return false
}

// HasProcesses reports what SetProcesses set.
func (g *Cgroup) HasProcesses() bool {
	g.owner.mu.Lock()
	defer g.owner.mu.Unlock()
	return g.procs
}

// Pids lists no process.
func (g *Cgroup) Pids() ([]int, error) { return nil, nil }

// Signal reports a signal sent when processes run.
func (g *Cgroup) Signal(int, syscall.Signal) (bool, error) { return g.HasProcesses(), nil }

// KillAll ends the cgroup's processes.
func (g *Cgroup) KillAll(time.Duration) error {
	g.owner.mu.Lock()
	defer g.owner.mu.Unlock()
	g.procs = false
	return nil
}

// WaitEmpty returns at once.
func (g *Cgroup) WaitEmpty(time.Duration) error { return nil }

// Update replaces the cgroup's resources.
func (g *Cgroup) Update(res *specs.LinuxResources) error {
	if err := g.owner.Faults.check("Cgroup.Update"); err != nil {
		return err
	}
	g.owner.mu.Lock()
	defer g.owner.mu.Unlock()
	g.Resources = res
	return nil
}

// Stats reports zero use.
func (g *Cgroup) Stats() (cgroups.Stats, error) { return cgroups.Stats{}, nil }

// OOMKills counts the kills OOMKill recorded.
func (g *Cgroup) OOMKills() int {
	g.owner.mu.Lock()
	defer g.owner.mu.Unlock()
	return g.oomKills
}

// Delete removes the cgroup; one with processes or children is EBUSY.
func (g *Cgroup) Delete() error {
	g.owner.mu.Lock()
	defer g.owner.mu.Unlock()
	if g.procs {
		return fmt.Errorf("remove cgroup %s: %w", g.path, syscall.EBUSY)
	}
	if g.owner.hasChildrenLocked(g.path) {
		return fmt.Errorf("remove cgroup %s: %w", g.path, syscall.EBUSY)
	}
	delete(g.owner.cgs, g.path)
	return nil
}

// Host is one set of fakes sharing their faults.
type Host struct {
	Faults    *Faults
	Engine    *Engine
	Mounts    *Mounts
	Images    *Images
	Sandboxes *Sandboxes
	Network   *Network
	Cgroups   *Cgroups
}

// NewHost returns fakes whose image roots are made under dir.
func NewHost(dir string) *Host {
	f := &Faults{}
	return &Host{
		Faults: f, Engine: &Engine{Faults: f}, Mounts: &Mounts{Faults: f, Dir: dir},
		Images: &Images{}, Sandboxes: &Sandboxes{Faults: f}, Network: &Network{Faults: f}, Cgroups: &Cgroups{Faults: f},
	}
}

// ErrInjected is the error a test makes a call fail with.
var ErrInjected = errors.New("injected failure")
