package deviceplugin

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	"github.com/enroot-cri/enroot-cri/ledger"
	"github.com/enroot-cri/enroot-cri/mig"
)

// Resource is one advertised resource: its name and the UUIDs of its devices.
type Resource struct {
	Name  string
	UUIDs []string
}

// Resources groups the bindable units of an inventory: whole GPUs as nvidia.com/gpu,
// MIG slices as nvidia.com/mig-<profile>.
func Resources(inv mig.Inventory) []Resource {
	byName := map[string][]string{}
	for _, d := range inv.Units() {
		name := "nvidia.com/gpu"
		if d.Slice != nil {
			name = "nvidia.com/mig-" + d.Slice.Profile
		}
		byName[name] = append(byName[name], d.UUID)
	}
	var out []Resource
	for name, uuids := range byName {
		out = append(out, Resource{Name: name, UUIDs: uuids})
	}
	slices.SortFunc(out, func(a, b Resource) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Manager runs one plugin server per resource and keeps it registered.
type Manager struct {
	Dir    string // the kubelet's device-plugins directory
	Ledger *ledger.Ledger
	Log    *slog.Logger
	// Poll is how often the ledger and the kubelet socket are looked at.
	Poll time.Duration
}

// Run serves every resource until ctx ends; a plugin whose socket the kubelet removed
// (it does so when it restarts) is served and registered again.
func (m *Manager) Run(ctx context.Context, resources []Resource) {
	var wg sync.WaitGroup
	for _, r := range resources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.serve(ctx, r)
		}()
	}
	wg.Wait()
}

// socketName is the plugin's socket file for a resource.
func socketName(resource string) string {
	return "enroot-cri-" + strings.NewReplacer("/", "-", ".", "-").Replace(resource) + ".sock"
}

func (m *Manager) serve(ctx context.Context, r Resource) {
	for ctx.Err() == nil {
		if err := m.serveOnce(ctx, r); err != nil {
			m.Log.Warn("device plugin", "resource", r.Name, "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(m.Poll):
		}
	}
}

// serveOnce serves r on its socket and registers it, until the socket disappears or
// ctx ends.
func (m *Manager) serveOnce(ctx context.Context, r Resource) error {
	sock := filepath.Join(m.Dir, socketName(r.Name))
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	srv := grpc.NewServer()
	p := &plugin{resource: r, ledger: m.Ledger, poll: m.Poll}
	pluginapi.RegisterDevicePluginServer(srv, p)
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	if err := register(ctx, filepath.Join(m.Dir, "kubelet.sock"), filepath.Base(sock), r.Name); err != nil {
		return err
	}
	m.Log.Info("device plugin registered", "resource", r.Name, "devices", len(r.UUIDs))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.Poll):
		}
		if _, err := os.Stat(sock); err != nil {
			return nil // the kubelet restarted: serve and register again
		}
	}
}

func register(ctx context.Context, kubelet, endpoint, resource string) error {
	conn, err := grpc.NewClient("unix://"+kubelet, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: endpoint, ResourceName: resource,
	})
	if err != nil {
		return fmt.Errorf("register %s with the kubelet at %s: %w", resource, kubelet, err)
	}
	return nil
}

// plugin serves one resource.
type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	resource Resource
	ledger   *ledger.Ledger
	poll     time.Duration
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// devices lists the resource's devices; one a Slurm job holds is unhealthy.
func (p *plugin) devices() []*pluginapi.Device {
	held := map[string]bool{}
	if c, err := p.ledger.Read(); err == nil {
		for uuid, h := range c.Devices {
			held[uuid] = h.Kind == ledger.HolderSlurm
		}
	}
	out := make([]*pluginapi.Device, len(p.resource.UUIDs))
	for i, uuid := range p.resource.UUIDs {
		health := pluginapi.Healthy
		if held[uuid] {
			health = pluginapi.Unhealthy
		}
		out[i] = &pluginapi.Device{ID: uuid, Health: health}
	}
	return out
}

// ListAndWatch sends the devices, and again whenever a Slurm job takes or releases one.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	var last string
	for {
		devs := p.devices()
		var b strings.Builder
		for _, d := range devs {
			b.WriteString(d.ID + "=" + d.Health + ";")
		}
		key := b.String()
		if key != last {
			if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: devs}); err != nil {
				return err
			}
			last = key
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-time.After(p.poll):
		}
	}
}

// Allocate names the devices as CDI devices, which enroot-cri binds (and claims in the
// ledger) when the kubelet creates the container, and sets NVIDIA_VISIBLE_DEVICES.
func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.GetContainerRequests() {
		car := &pluginapi.ContainerAllocateResponse{Envs: map[string]string{
			"NVIDIA_VISIBLE_DEVICES": strings.Join(c.GetDevicesIds(), ","),
		}}
		for _, id := range c.GetDevicesIds() {
			if !slices.Contains(p.resource.UUIDs, id) {
				return nil, fmt.Errorf("device %s is not a %s of this node", id, p.resource.Name)
			}
			car.CdiDevices = append(car.CdiDevices, &pluginapi.CDIDevice{Name: "nvidia.com/gpu=" + id})
		}
		resp.ContainerResponses = append(resp.ContainerResponses, car)
	}
	return resp, nil
}
