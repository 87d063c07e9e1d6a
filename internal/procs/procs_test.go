package procs

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFind(t *testing.T) {
	self := os.Getpid()
	assert.Equal(t, self, Find(func(pid int) bool { return pid == self }))
	assert.Zero(t, Find(func(int) bool { return false }))
}
