package diskusage

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOfCountsBlocksAndInodes(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a"), make([]byte, 64<<10), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "d"), 0o755))
	u, err := Of(dir)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), u.Inodes, "the directory, a and d")
	assert.GreaterOrEqual(t, u.Bytes, uint64(64<<10))
	u, err = Of(filepath.Join(dir, "missing"))
	require.NoError(t, err)
	assert.Zero(t, u)
}

func TestFilesystem(t *testing.T) {
	dir := t.TempDir()
	fs, err := Filesystem(dir)
	require.NoError(t, err)
	assert.NotZero(t, fs.Bytes)
	assert.GreaterOrEqual(t, fs.Inodes, fs.InodesFree)
	_, err = Filesystem(filepath.Join(dir, "missing"))
	assert.ErrorContains(t, err, "missing")
}
