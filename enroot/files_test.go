package enroot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func lookupFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseEnviron(t *testing.T) {
	env, err := ParseEnviron(strings.NewReader(`
# comment
PATH=/usr/local/bin:${PATH}
GREETING="hello world"
HOME
MISSING
ENROOT_SECRET=dropped
1BAD=dropped
EMPTY=
`), lookupFrom(map[string]string{"PATH": "/bin", "HOME": "/root"}))
	require.NoError(t, err)
	assert.Equal(t, []string{"PATH=/usr/local/bin:/bin", "GREETING=hello world", "HOME=/root", "EMPTY="}, env)
}

func TestParseFstab(t *testing.T) {
	mounts, err := ParseFstab(strings.NewReader(`
# site mounts
/scratch          /scratch        none   x-create=dir,bind,rw,nosuid
tmpfs             /tmp            tmpfs  x-create=dir,rw,nosuid,nodev,mode=1777
${ENROOT_ROOTFS}/data /data       none   x-create=dir,bind,nofail
/var/run/x        /run/x          none   x-detach,nofail
/mnt/a            /mnt/b          none   x-move
/proc             /proc           none   x-create=dir,rbind,rw   0   -1
`), lookupFrom(map[string]string{"ENROOT_ROOTFS": "/r"}))
	require.NoError(t, err)
	assert.Equal(t, []MountEntry{
		{Source: "/scratch", Target: "/scratch", Type: "none", Options: []string{"bind", "rw", "nosuid"}, Create: "dir"},
		{Source: "tmpfs", Target: "/tmp", Type: "tmpfs", Options: []string{"rw", "nosuid", "nodev", "mode=1777"}, Create: "dir"},
		{Source: "/r/data", Target: "/data", Type: "none", Options: []string{"bind"}, Create: "dir", NoFail: true},
		{Source: "/var/run/x", Target: "/run/x", Type: "none", Detach: true, NoFail: true},
		{Source: "/mnt/a", Target: "/mnt/b", Type: "none", Move: true},
		{Source: "/proc", Target: "/proc", Type: "none", Options: []string{"rbind", "rw"}, Create: "dir", Pass: -1},
	}, mounts)
	_, err = ParseFstab(strings.NewReader("onlyone\n"), lookupFrom(nil))
	assert.ErrorContains(t, err, "line 1")
}

func TestHooksAndEnvironDropIns(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "hooks.d"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "environ.d"), 0o755))
	for name, mode := range map[string]os.FileMode{"20-b.sh": 0o755, "10-a.sh": 0o755, "30-off.sh": 0o644, "40-x.txt": 0o755} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "hooks.d", name), []byte("#!/bin/sh\n"), mode))
	}
	assert.Equal(t, []string{filepath.Join(dir, "hooks.d", "10-a.sh"), filepath.Join(dir, "hooks.d", "20-b.sh")}, Hooks(dir),
		"only executable .sh hooks, in glob order")
	// A hook Enroot does not run (not executable) is no hook: a GPU container then
	// gets its driver files from CDI instead.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hooks.d", "98-nvidia.sh"), []byte("#!/bin/sh\n"), 0o644))
	assert.False(t, HasHook(dir, "nvidia"))
	require.NoError(t, os.Chmod(filepath.Join(dir, "hooks.d", "98-nvidia.sh"), 0o755))
	assert.True(t, HasHook(dir, "nvidia"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "environ.d", "10-a.env"), []byte("A=1\nB=2\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "environ.d", "20-b.env"), []byte("B=3\n"), 0o644))
	env, err := Environ(dir, lookupFrom(nil))
	require.NoError(t, err)
	assert.Equal(t, []string{"A=1", "B=2", "B=3"}, env)
}
