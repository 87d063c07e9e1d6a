package server

import (
	"log/slog"
	"sync/atomic"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/enroot/image"
)

// Server implements runtimeapi.RuntimeServiceServer and runtimeapi.ImageServiceServer.
// RPCs of the runtime service that are not built yet answer Unimplemented.
type Server struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg    config.Config
	images *image.Store
	log    *slog.Logger
	ready  atomic.Bool
}

// New returns a server that answers Unavailable until Ready gives it its recovered
// state.
func New(cfg config.Config, log *slog.Logger) *Server {
	return &Server{cfg: cfg, log: log}
}

// Ready hands the server its recovered image store and lets calls through.
func (s *Server) Ready(images *image.Store) {
	s.images = images
	s.ready.Store(true)
}

// Register adds both CRI services to g.
func (s *Server) Register(g *grpc.Server) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}
