package pidwatch

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWatcherReportsEachEndOnce(t *testing.T) {
	w, err := New()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan string, 10)
	go w.Run(ctx, func(key string) { ended <- key })

	short := exec.Command("sleep", "0.2")
	long := exec.Command("sleep", "100")
	require.NoError(t, short.Start())
	require.NoError(t, long.Start())
	t.Cleanup(func() { _ = long.Process.Kill(); _ = long.Wait() })
	require.NoError(t, w.Add("short", short.Process.Pid, func() bool { return true }))
	require.NoError(t, w.Add("long", long.Process.Pid, func() bool { return true }))
	require.NoError(t, short.Wait())

	select {
	case key := <-ended:
		assert.Equal(t, "short", key)
	case <-time.After(30 * time.Second):
		t.Fatal("no event for the process that ended")
	}
	assert.Equal(t, 1, w.Len(), "an ended process is no longer watched")
	w.Remove("long")
	assert.Equal(t, 0, w.Len())
	require.NoError(t, long.Process.Kill())
	_ = long.Wait()
	select {
	case key := <-ended:
		t.Fatalf("event for %q after Remove", key)
	case <-time.After(700 * time.Millisecond):
	}
}

func TestAddRefusesAnEndedOrDifferentProcess(t *testing.T) {
	w, err := New()
	require.NoError(t, err)
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	assert.ErrorIs(t, w.Add("gone", cmd.Process.Pid, func() bool { return true }), ErrGone)
	other := exec.Command("sleep", "100")
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	assert.ErrorIs(t, w.Add("reused", other.Process.Pid, func() bool { return false }), ErrGone)
	assert.Equal(t, 0, w.Len())
}
