package enroot

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadSettings(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "enroot.conf.d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "enroot.conf"), []byte(`
# comment
ENROOT_SQUASH_OPTIONS   "-comp xz -b 1M"
ENROOT_ROOTFS_WRITABLE  yes
ENROOT_REMAP_ROOT       yes
ENROOT_DATA_PATH        /data
ENROOT_CACHE_PATH       ${ENROOT_DATA_PATH}/cache
PATH                    /ignored
https_proxy             http://proxy:3128
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "enroot.conf.d", "10-site.conf"),
		[]byte("ENROOT_ROOTFS_WRITABLE no\n"), 0o644))

	s, err := LoadSettings(dir, []string{"ENROOT_REMAP_ROOT=false", "HOME=/root", "ENROOT_MAX_PROCESSORS=4"})
	require.NoError(t, err)
	assert.Equal(t, Settings{
		"ENROOT_SQUASH_OPTIONS": "-comp xz -b 1M",
		"ENROOT_DATA_PATH":      "/data",
		"ENROOT_CACHE_PATH":     "/data/cache",
		"https_proxy":           "http://proxy:3128",
		"ENROOT_MAX_PROCESSORS": "4",
	}, s)
	assert.Equal(t, "-comp xz -b 1M", s.SquashOptions())
}

func TestLoadSettingsMissingDir(t *testing.T) {
	s, err := LoadSettings(filepath.Join(t.TempDir(), "absent"), nil)
	require.NoError(t, err)
	assert.Empty(t, s)
	assert.Equal(t, DefaultSquashOptions, s.SquashOptions())
}
