package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/cri/deviceplugin"
	"github.com/enroot-cri/enroot-cri/cri/imagesocket"
	"github.com/enroot-cri/enroot-cri/cri/server"
	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/internal/version"
	"github.com/enroot-cri/enroot-cri/ledger"
)

// gracePeriod is how long in-flight calls may run after a stop is asked for; then
// they are cancelled.
const gracePeriod = 10 * time.Second

// maxMessageSize matches the kubelet's CRI client limit.
const maxMessageSize = 16 << 20

// Run serves the CRI until ctx ends. ready, when not nil, is closed once the daemon
// answers calls for real.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ready chan<- struct{}) error {
	for _, dir := range []string{cfg.Root, cfg.State, filepath.Dir(cfg.Socket)} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	l, err := Listen(cfg.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Socket)

	led := &ledger.Ledger{Path: cfg.LedgerPath()}
	srv, err := server.New(cfg, log, server.Options{Ledger: led})
	if err != nil {
		return err
	}
	g := grpc.NewServer(grpc.UnaryInterceptor(srv.UnaryInterceptor), grpc.StreamInterceptor(srv.StreamInterceptor),
		grpc.MaxRecvMsgSize(maxMessageSize), grpc.MaxSendMsgSize(maxMessageSize))
	srv.Register(g)
	sl, err := net.Listen("tcp", cfg.Streaming.Address)
	if err != nil {
		return fmt.Errorf("listen for streaming on %s: %w", cfg.Streaming.Address, err)
	}
	stopStreaming, err := srv.StartStreaming(sl)
	if err != nil {
		sl.Close()
		return err
	}
	defer stopStreaming()
	served := make(chan error, 1)
	go func() { served <- g.Serve(l) }()
	log.Info("enroot-cri listening", "socket", cfg.Socket, "streaming", sl.Addr().String(), "version", version.Semantic())

	images, err := openImages(cfg)
	if err != nil {
		g.Stop()
		return err
	}
	for _, q := range images.Quarantined() {
		log.Error("image record unreadable: moved aside, the other images are served", "moved_to", q.Path, "error", q.Err)
	}
	if err := srv.Ready(images); err != nil {
		g.Stop()
		return fmt.Errorf("recover pods and containers: %w", err)
	}
	il, err := listen("unixpacket", cfg.ImageSocket(), 0o666)
	if err != nil {
		g.Stop()
		return err
	}
	defer os.Remove(cfg.ImageSocket())
	defer il.Close()
	isrv := &imagesocket.Server{Store: images, ShareWithJobs: cfg.Images.ShareWithJobs, Log: log}
	go func() {
		if err := isrv.Serve(il.(*net.UnixListener)); err != nil {
			log.Error("image socket stopped", "socket", cfg.ImageSocket(), "error", err)
		}
	}()
	log.Info("enroot-cri ready", "root", cfg.Root, "images", len(images.List()), "image_socket", cfg.ImageSocket(),
		"share_with_jobs", cfg.Images.ShareWithJobs)
	if cfg.GPUs.DevicePlugin {
		resources := deviceplugin.Resources(srv.GPUs())
		log.Info("device plugin", "dir", cfg.GPUs.DevicePluginDir, "resources", len(resources))
		dp := &deviceplugin.Manager{Dir: cfg.GPUs.DevicePluginDir, Ledger: led, Log: log, Poll: time.Second}
		go dp.Run(ctx, resources)
	}
	if cfg.Metrics.Address != "" {
		addr, err := srv.Metrics().Serve(ctx, cfg.Metrics.Address)
		if err != nil {
			g.Stop()
			return err
		}
		log.Info("metrics", "address", "http://"+addr+"/metrics")
	}
	if ready != nil {
		close(ready)
	}

	select {
	case err := <-served:
		return fmt.Errorf("serve %s: %w", cfg.Socket, err)
	case <-ctx.Done():
	}
	log.Info("enroot-cri stopping", "grace", gracePeriod)
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(gracePeriod):
		g.Stop()
	}
	log.Info("enroot-cri stopped")
	return nil
}

func openImages(cfg config.Config) (*image.Store, error) {
	squash := cfg.Images.SquashOptions
	if squash == "" {
		settings, err := enroot.LoadSettings(cfg.Enroot.ConfigDir, os.Environ())
		if err != nil {
			return nil, err
		}
		squash = settings.SquashOptions()
	}
	hosts := make(map[string]image.Host, len(cfg.Registries))
	for h, r := range cfg.Registries {
		hosts[h] = image.Host{Mirrors: r.Mirrors, Insecure: r.Insecure}
	}
	return image.Open(image.Options{
		Root: cfg.Root, Hosts: hosts, SquashOptions: squash,
		MaxConcurrentDownloads: cfg.Images.MaxConcurrentDownloads,
		UserAgent:              version.RuntimeName + "/" + version.Version,
		Limits: image.Limits{MaxBytes: cfg.Images.MaxImageBytes, MaxEntries: cfg.Images.MaxEntries,
			MinFreeBytes: cfg.Images.MinFreeBytes},
		PullTimeout: cfg.Images.PullTimeout.Duration,
		Shared:      cfg.Images.Shared,
		Jobs:        filepath.Join(cfg.Root, "jobs"),
	})
}

// Listen claims a unix socket at path with mode 0660. A stale socket file is
// replaced; a socket a live process answers on is an error.
func Listen(path string) (net.Listener, error) {
	return listen("unix", path, 0o660)
}

// listen claims a socket of network ("unix" or "unixpacket") at path with mode.
func listen(network, path string, mode os.FileMode) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("socket path %s exists and is not a socket; remove it or set socket in the configuration", path)
		}
		conn, err := net.DialTimeout(network, path, time.Second)
		if err == nil {
			conn.Close()
			return nil, fmt.Errorf("another process (another enroot-cri?) is serving on %s; stop it first", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("check socket %s: %w", path, err)
		}
	}
	// Listen on a private name, set the mode, then rename into place: the socket is
	// never reachable with a wider mode.
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	l, err := net.Listen(network, tmp)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("set mode of %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return l, nil
}
