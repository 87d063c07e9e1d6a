package daemon

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/config"
)

func TestListenReplacesStaleSocketAndSetsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cri.sock")
	stale, err := net.Listen("unix", path)
	require.NoError(t, err)
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // the file stays, nobody answers: a crashed daemon's socket

	l, err := Listen(path)
	require.NoError(t, err)
	defer l.Close()
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o660), st.Mode().Perm())
	assert.Equal(t, os.ModeSocket, st.Mode().Type())
}

func TestListenRefusesLiveSocketAndNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cri.sock")
	l, err := Listen(path)
	require.NoError(t, err)
	defer l.Close()
	_, err = Listen(path)
	assert.ErrorContains(t, err, "is serving on "+path)

	file := filepath.Join(t.TempDir(), "plain")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = Listen(file)
	assert.ErrorContains(t, err, "is not a socket")
}

func TestRunServesThenStopsAndRemovesSocket(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Socket = filepath.Join(dir, "run", "cri.sock")
	cfg.Root = filepath.Join(dir, "root")
	cfg.State = filepath.Join(dir, "state")
	cfg.Enroot.ConfigDir = filepath.Join(dir, "enroot")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon exited: %v", err)
	}

	conn, err := grpc.NewClient("unix://"+cfg.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	v, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	require.NoError(t, err)
	assert.Equal(t, "enroot-cri", v.RuntimeName)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
	}
	assert.NoFileExists(t, cfg.Socket)
}
