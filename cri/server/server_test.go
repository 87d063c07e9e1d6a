package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// harness is a Server on a unix socket with CRI clients, over a store in a temp dir.
type harness struct {
	srv     *Server
	runtime runtimeapi.RuntimeServiceClient
	images  runtimeapi.ImageServiceClient
	reg     *testregistry.Registry
	cfg     config.Config
}

func newHarness(t *testing.T, edit func(*config.Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Root = filepath.Join(dir, "root")
	cfg.State = filepath.Join(dir, "state")
	cfg.Socket = filepath.Join(dir, "cri.sock")
	cfg.CNI.ConfDir = filepath.Join(dir, "cni")
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	require.NoError(t, err)
	g := grpc.NewServer(grpc.UnaryInterceptor(srv.UnaryInterceptor))
	srv.Register(g)
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	stop, err := srv.StartStreaming(sl)
	require.NoError(t, err)
	t.Cleanup(stop)
	l, err := net.Listen("unix", cfg.Socket)
	require.NoError(t, err)
	go g.Serve(l)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+cfg.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return &harness{srv: srv, cfg: cfg,
		runtime: runtimeapi.NewRuntimeServiceClient(conn), images: runtimeapi.NewImageServiceClient(conn)}
}

// ready opens the store and lets calls through; with a registry when images are needed.
func (h *harness) ready(t *testing.T, hosts map[string]image.Host) {
	t.Helper()
	for _, tool := range []string{"mksquashfs", "unsquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install squashfs-tools)", tool)
		}
	}
	store, err := image.Open(image.Options{Root: h.cfg.Root, Hosts: hosts,
		SquashOptions: enroot.DefaultSquashOptions, MaxConcurrentDownloads: 2})
	require.NoError(t, err)
	require.NoError(t, h.srv.Ready(store))
}

func (h *harness) startRegistry(t *testing.T) *testregistry.Registry {
	t.Helper()
	reg, err := testregistry.Start(testregistry.Options{})
	require.NoError(t, err)
	t.Cleanup(reg.Close)
	h.reg = reg
	return reg
}

func (h *harness) pushImage(t *testing.T, repoTag string, cfg v1.Config, marker string) {
	t.Helper()
	l, err := testregistry.Layer([]testregistry.Entry{{Name: "marker", Body: marker}}, testregistry.Gzip, true)
	require.NoError(t, err)
	img, err := testregistry.Image(cfg, true, l)
	require.NoError(t, err)
	_, err = h.reg.Push(repoTag, img)
	require.NoError(t, err)
}

func requireCode(t *testing.T, want codes.Code, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.Equal(t, want.String(), status.Code(err).String(), "error: %v", err)
}

var bg = context.Background()
