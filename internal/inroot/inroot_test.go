package inroot

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestResolveStaysInTheTree: an image's symlinks to absolute paths and to .. name what
// is in the image, never the host's files.
func TestResolveStaysInTheTree(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/passwd"), nil, 0o644))
	require.NoError(t, os.Symlink("/etc", filepath.Join(root, "abs")))
	require.NoError(t, os.Symlink("../../../../etc", filepath.Join(root, "up")))
	for _, rel := range []string{"etc/passwd", "/abs/passwd", "up/passwd", "../../etc/passwd"} {
		got, err := Resolve(root, rel)
		require.NoError(t, err, rel)
		assert.Equal(t, filepath.Join(root, "etc/passwd"), got, rel)
	}
	_, err := Resolve(root, "abs/shadow")
	assert.ErrorIs(t, err, os.ErrNotExist, "the host's /etc/shadow is not reached")
}
