package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/enroot-cri/enroot-cri/cgroups"
	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/cri/metrics"
	"github.com/enroot-cri/enroot-cri/cri/network"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/logging"
	"github.com/enroot-cri/enroot-cri/internal/pidwatch"
	"github.com/enroot-cri/enroot-cri/internal/sealed"
	"github.com/enroot-cri/enroot-cri/ledger"
	"github.com/enroot-cri/enroot-cri/mig"
)

// Server implements runtimeapi.RuntimeServiceServer and runtimeapi.ImageServiceServer.
// RPCs not built yet answer Unimplemented.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg    config.Config
	log    *slog.Logger
	ready  atomic.Bool
	recs   *records
	exe    string
	driver cgroups.Driver
	// The seams (seams.go): the host's parts, or a test's fakes.
	images    Images
	engine    Engine
	mounts    ImageMounts
	sandboxes Sandboxes
	network   Network
	cgroups   Cgroups
	// policy is the node's Slurm cgroup.conf, node the machine it confines on, and
	// allowedDevices what its AllowedDevicesFile adds to every container.
	policy         cgroups.SlurmConf
	node           cgroups.Node
	allowedDevices []specs.LinuxDevice
	// gpus is the node's inventory, read at start; ledger the node's record of who
	// holds which GPU, slice and Slurm CPUs.
	gpus    mig.Inventory
	ledger  Ledger
	metrics *metrics.Metrics
	stream  streaming.Server
	cpu     cpuSamples
	// life owns the containers' moves between states, their exits and events
	// (lifecycle.go).
	life lifecycle
	// podNames guards reservedPodNames: names of pods being created, by pod ID.
	podNames         sync.Mutex
	reservedPodNames map[string]string
}

// New returns a server that answers Unavailable until Ready. The parts opts leaves
// nil are the host's.
func New(cfg config.Config, log *slog.Logger, opts Options) (*Server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	recs, err := newRecords(filepath.Join(cfg.Root, "records"))
	if err != nil {
		return nil, err
	}
	policy, err := cgroups.ReadSlurmConf(cfg.Cgroups.SlurmCgroupConf)
	if err != nil {
		return nil, err
	}
	if err := policy.CheckPlugin(); err != nil {
		return nil, err
	}
	if len(policy.Ignored) > 0 {
		log.Debug("cgroup.conf keys that do not change a container's confinement", "file", policy.Path, "keys", policy.Ignored)
	}
	allowed, err := policy.AllowedDevices()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: log, recs: recs, exe: exe, driver: cgroups.Driver(cfg.Cgroups.Driver),
		policy: policy, allowedDevices: allowed,
		engine: opts.Engine, mounts: opts.Mounts, sandboxes: opts.Sandboxes, network: opts.Network,
		ledger: opts.Ledger, cgroups: opts.Cgroups,
	}
	if opts.Node != nil {
		s.node = *opts.Node
	} else if s.node, err = cgroups.ReadNode(); err != nil {
		return nil, err
	}
	if opts.GPUs != nil {
		s.gpus = *opts.GPUs
	} else {
		s.gpus = mig.ReadInventory(context.Background(), cfg.NVMLHelperPath())
	}
	if s.gpus.Unavailable != "" {
		log.Info("no GPUs", "reason", s.gpus.Unavailable)
	} else {
		log.Info("GPUs", "count", len(s.gpus.GPUs), "bindable", len(s.gpus.Units()), "driver", s.gpus.Driver)
	}
	if err := s.hostParts(exe); err != nil {
		return nil, err
	}
	s.metrics = metrics.New()
	s.metrics.Register(stateCollector{s})
	return s, nil
}

// hostParts fills the seams Options left nil with the host's parts.
func (s *Server) hostParts(exe string) error {
	if s.engine == nil || s.sandboxes == nil {
		// Pod holders and monitors run from a sealed copy of the daemon's binary.
		bin, err := sealed.Copy(exe)
		if err != nil {
			return err
		}
		if s.engine == nil {
			e := &container.Engine{
				StateDir: filepath.Join(s.cfg.State, "containers"),
				RootDir:  filepath.Join(s.cfg.Root, "containers"),
				LogDir:   filepath.Join(s.cfg.State, "monitors"),
				Exe:      exe,
				ShimExe:  container.FindShim(exe),
				Sealed:   bin,
			}
			if e.ShimExe != "" {
				s.log.Info("container monitor", "binary", e.ShimExe)
			} else {
				s.log.Warn("no enroot-cri-shim beside the daemon or in /usr/libexec/enroot-cri: containers are monitored by the daemon's own binary, which costs more memory per container")
			}
			s.engine = e
		}
		if s.sandboxes == nil {
			s.sandboxes = hostSandboxes{exe: sealed.Path(bin)}
		}
	}
	if s.mounts == nil {
		s.mounts = &container.ImageMounts{Dir: filepath.Join(s.cfg.State, "images")}
	}
	if s.network == nil {
		s.network = &network.Manager{ConfDir: s.cfg.CNI.ConfDir, BinDirs: s.cfg.CNI.BinDirs, CacheDir: filepath.Join(s.cfg.Root, "cni")}
	}
	if s.ledger == nil {
		s.ledger = &ledger.Ledger{Path: s.cfg.LedgerPath()}
	}
	if s.cgroups == nil {
		s.cgroups = hostCgroups{}
	}
	return nil
}

// Ready recovers pods and containers, takes the recovered image store, and lets calls
// through.
func (s *Server) Ready(images Images) error {
	s.images = images
	exits, err := pidwatch.New()
	if err != nil {
		return err
	}
	s.life.exits = exits
	if err := s.recover(); err != nil {
		return err
	}
	go s.watchExits(logging.With(context.Background(), s.log.With("phase", "watch")))
	go s.followSlurmCPUs(logging.With(context.Background(), s.log.With("phase", "slurm-cpus")))
	s.ready.Store(true)
	return nil
}

// Register adds both CRI services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

func (s *Server) podDir(id string) string { return filepath.Join(s.cfg.State, "pods", id) }

// runningContainer finds a container and checks that it runs.
func (s *Server) runningContainer(ctx context.Context, id string) (*containerRecord, error) {
	c, err := s.recs.container(id)
	if err != nil {
		return nil, err
	}
	if !s.runs(c) {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// Metrics are the daemon's Prometheus metrics.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// GPUs is the node's inventory, as read at start.
func (s *Server) GPUs() mig.Inventory { return s.gpus }
