package procs

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestFind(t *testing.T) {
	self := os.Getpid()
	assert.Equal(t, self, Find(func(pid int) bool { return pid == self }))
	assert.Zero(t, Find(func(int) bool { return false }))
}

func TestCountsAndLimits(t *testing.T) {
	f, err := os.Open("/proc/self/limits")
	if err != nil {
		t.Skip("no /proc")
	}
	defer f.Close()
	threads, fds, _ := Counts([]int{os.Getpid(), 1 << 30})
	assert.Positive(t, threads, "this process's threads; a PID that does not exist counts nothing")
	assert.Positive(t, fds)

	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	v, ok := SoftLimit(os.Getpid(), "Max open files")
	if lim.Cur == unix.RLIM_INFINITY {
		assert.False(t, ok)
	} else {
		assert.True(t, ok)
		assert.Equal(t, lim.Cur, v)
	}
	_, ok = SoftLimit(os.Getpid(), "Max nothing")
	assert.False(t, ok)
	_, ok = SoftLimit(1<<30, "Max open files")
	assert.False(t, ok)
}
