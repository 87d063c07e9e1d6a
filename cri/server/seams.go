package server

import (
	"context"
	"io"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/cri/network"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/enroot/sandbox"
	"github.com/enroot-cri/enroot-cri/internal/diskusage"
	"github.com/enroot-cri/enroot-cri/internal/pidwatch"
	"github.com/enroot-cri/enroot-cri/ledger"
	"github.com/enroot-cri/enroot-cri/mig"
)

// The seams: what the server asks of the host, each as the few calls it makes. The
// daemon passes the real parts (Options' zero values); tests pass the fakes of
// cri/server/fake, so that what a handler decides (the spec it builds, what it refuses,
// what it undoes) is tested without root or a live kernel.

// Engine runs containers: their monitors, inits and bundles (container.Engine).
type Engine interface {
	Create(ctx context.Context, cfg *container.Config) (pid int, err error)
	Start(ctx context.Context, id string) error
	State(id string) container.State
	// WatchShim adds the container's monitor to w, which reports its end;
	// pidwatch.ErrGone when it has already ended.
	WatchShim(w *pidwatch.Watcher, id string) error
	Signal(id string, sig syscall.Signal) error
	Wait(ctx context.Context, id string) (*container.Exit, error)
	Exec(ctx context.Context, id string, opts container.ExecOptions) (int, error)
	Attach(ctx context.Context, id string, in io.Reader, out, errw io.Writer, resize <-chan container.TerminalSize) error
	ReopenLog(ctx context.Context, id string) error
	// Delete removes the container's bundle and writable layer; Forget the monitor's
	// log that Delete keeps.
	Delete(id string) error
	Forget(id string) error
	// Bundles lists the containers that have a bundle or a writable layer, and
	// MonitorLogs those that have a monitor log.
	Bundles() ([]string, error)
	MonitorLogs() ([]string, error)
	Bundle(id string) string
	MonitorLog(id string) string
	LayerUsage(id string) (dir string, u diskusage.Usage, err error)
}

// ImageMounts mounts each image's squashfs once for all the containers that use it
// (container.ImageMounts).
type ImageMounts interface {
	Acquire(ctx context.Context, id, squashfs string) (root string, err error)
	Release(id string) error
	Recover(inUse map[string]int) error
}

// Images is the node's image store (image.Store).
type Images interface {
	Get(ref string) (*image.Image, error)
	List() []*image.Image
	Pull(ctx context.Context, ref string, opts image.PullOptions) (*image.Image, error)
	Remove(ref string) error
	Usage() (image.Usage, error)
}

// Sandboxes makes and ends pods' namespaces, shared memory and PID holders
// (enroot/sandbox).
type Sandboxes interface {
	Create(dir string, opts sandbox.Options) (*sandbox.Sandbox, error)
	// Alive reports whether the sandbox's namespaces are still pinned and its PID
	// holder, when it has one, runs (after a reboot neither is).
	Alive(sb *sandbox.Sandbox) bool
	StopHolder(sb *sandbox.Sandbox)
	Destroy(sb *sandbox.Sandbox) error
	// Leftover finds what remains in dir of a sandbox no record owns (a create cut
	// off by a crash), for Destroy.
	Leftover(dir string) *sandbox.Sandbox
}

// Network attaches pods to the node's CNI network (network.Manager).
type Network interface {
	Ready() error
	Setup(ctx context.Context, p network.Pod) ([]string, error)
	Teardown(ctx context.Context, p network.Pod) error
}

// Ledger is the node's record of who holds which GPU, MIG slice and Slurm CPU
// (ledger.Ledger), shared with slurmd's prolog and epilog.
type Ledger interface {
	Read() (*ledger.Claims, error)
	Claim(uuids []string, h ledger.Holder) error
	Allocate(candidates []string, n int, h ledger.Holder) ([]string, error)
	Release(kind, id string) ([]string, error)
	Reconcile(keep func(containerID string) bool) ([]string, error)
	// ModTime is when the ledger last changed.
	ModTime() (time.Time, error)
}

// Cgroups makes, opens and removes containers' cgroups (package cgroups). Paths are
// relative to the cgroup root; a cgroup that does not exist is os.ErrNotExist.
type Cgroups interface {
	// Create makes the cgroup with resources, and the ancestors it lacks: they are
	// returned, to be removed with the container.
	Create(path string, res *specs.LinuxResources) (cg Cgroup, madeAncestors []string, err error)
	Load(path string) (Cgroup, error)
	MissingAncestors(path string) []string
	RemoveAncestors(made []string)
}

// Cgroup is one container's cgroup.
type Cgroup = cgroups.Handle

// Options are the parts a server runs on; what is left nil is the host's own, made from
// the configuration.
type Options struct {
	Engine    Engine
	Mounts    ImageMounts
	Sandboxes Sandboxes
	Network   Network
	Ledger    Ledger
	Cgroups   Cgroups
	// GPUs is the node's GPU inventory; nil reads it through the NVML helper.
	GPUs *mig.Inventory
	// Node is the machine's CPUs and memory; nil reads them from the host.
	Node *cgroups.Node
}

var (
	_ Engine      = (*container.Engine)(nil)
	_ ImageMounts = (*container.ImageMounts)(nil)
	_ Images      = (*image.Store)(nil)
	_ Network     = (*network.Manager)(nil)
	_ Ledger      = (*ledger.Ledger)(nil)
	_ Sandboxes   = hostSandboxes{}
	_ Cgroups     = hostCgroups{}
)

// hostCgroups is Cgroups on the host's cgroup file systems.
type hostCgroups struct{}

func (hostCgroups) Create(path string, res *specs.LinuxResources) (Cgroup, []string, error) {
	cg, err := cgroups.Create(path, res)
	if err != nil {
		return nil, nil, err
	}
	return cg, cg.Created, nil
}

func (hostCgroups) Load(path string) (Cgroup, error) {
	cg, err := cgroups.Load(path)
	if err != nil {
		return nil, err
	}
	return cg, nil
}

func (hostCgroups) MissingAncestors(path string) []string { return cgroups.MissingAncestors(path) }
func (hostCgroups) RemoveAncestors(made []string)         { cgroups.RemoveAncestors(made) }

// hostSandboxes is Sandboxes on the host's namespaces, with PID holders run from exe
// (the daemon's sealed copy).
type hostSandboxes struct{ exe string }

func (h hostSandboxes) Create(dir string, opts sandbox.Options) (*sandbox.Sandbox, error) {
	opts.Exe = h.exe
	return sandbox.Create(dir, opts)
}

func (hostSandboxes) Alive(sb *sandbox.Sandbox) bool {
	return sb.Pinned() && (sb.PIDNS == "" || sb.HolderAlive())
}

func (hostSandboxes) StopHolder(sb *sandbox.Sandbox)       { sb.StopHolder() }
func (hostSandboxes) Destroy(sb *sandbox.Sandbox) error    { return sb.Destroy() }
func (hostSandboxes) Leftover(dir string) *sandbox.Sandbox { return sandbox.Leftover(dir) }
