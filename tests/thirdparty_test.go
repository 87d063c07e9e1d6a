package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Real Enroot and pyxis, built from their release sources (../shared/thirdparty, or
// ENROOT_SRC and PYXIS_SRC: a directory or a .tar.gz), for the parity tests. They are
// built once into _output/thirdparty and reused; tests skip with the reason when the
// sources are absent.

// enrootPackages are the Debian packages Enroot builds and runs with.
var enrootPackages = []string{"build-essential", "libbsd-dev", "makeself", "curl", "gawk", "jq", "parallel",
	"pigz", "pv", "squashfs-tools", "zstd", "libcap2-bin", "passwd"}

// enrootInstall is an Enroot installation: Prefix/bin (enroot and its helpers),
// Prefix/lib/enroot (common.sh and friends), Prefix/etc/enroot (its stock
// configuration, hooks and fstabs as shipped) and Source (the unpacked tree).
type enrootInstall struct{ Prefix, Source string }

func (e enrootInstall) Bin() string       { return filepath.Join(e.Prefix, "bin") }
func (e enrootInstall) Lib() string       { return filepath.Join(e.Prefix, "lib", "enroot") }
func (e enrootInstall) ConfigDir() string { return filepath.Join(e.Prefix, "etc", "enroot") }

var thirdparty struct {
	sync.Mutex
	enroot *enrootInstall
	pyxis  string
}

// thirdpartySource finds a release of name (enroot, pyxis): $envVar, else
// ../../shared/thirdparty/name-*.tar.gz; "" when there is none.
func thirdpartySource(envVar, name string) string {
	if v := os.Getenv(envVar); v != "" {
		return v
	}
	matches, _ := filepath.Glob(filepath.Join("..", "..", "shared", "thirdparty", name+"-*.tar.gz"))
	if len(matches) == 0 {
		return ""
	}
	abs, _ := filepath.Abs(matches[len(matches)-1])
	return abs
}

// unpack puts a source directory or archive under dir and returns the tree.
func unpack(t *testing.T, src, dir string) string {
	t.Helper()
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		return src
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	out, err := exec.Command("tar", "-xzf", src, "-C", dir).CombinedOutput()
	require.NoError(t, err, "unpack %s: %s", src, out)
	top := strings.TrimSuffix(filepath.Base(src), ".tar.gz")
	return filepath.Join(dir, top)
}

// buildEnroot builds and installs Enroot (glibc, libbsd, Debian's makeself; the
// release archive lacks its submodules) and returns the installation.
func buildEnroot(t *testing.T) enrootInstall {
	t.Helper()
	thirdparty.Lock()
	defer thirdparty.Unlock()
	if thirdparty.enroot != nil {
		return *thirdparty.enroot
	}
	src := thirdpartySource("ENROOT_SRC", "enroot")
	if src == "" {
		t.Skip("no Enroot sources: set ENROOT_SRC or provide ../shared/thirdparty/enroot-*.tar.gz")
	}
	needPackages(t, enrootPackages...)
	out, _ := filepath.Abs(filepath.Join("..", "_output", "thirdparty"))
	inst := enrootInstall{Prefix: filepath.Join(out, "enroot")}
	if _, err := os.Stat(filepath.Join(inst.Bin(), "enroot")); err != nil {
		tree := unpack(t, src, filepath.Join(out, "src"))
		inst.Source = tree
		_ = os.MkdirAll(filepath.Join(tree, "deps", "makeself"), 0o755)
		copyFile(t, "/usr/bin/makeself", filepath.Join(tree, "deps", "makeself", "makeself.sh"), 0o755)
		require.NoError(t, os.WriteFile(filepath.Join(tree, "deps", "linux-headers", "Makefile"), []byte("install:\n\t@true\n"), 0o644))
		run(t, tree, "make", "-C", "deps", "FORCE_GLIBC=1")
		// The paths are built into the enroot script: the same for make and make install.
		dirs := []string{"prefix=" + inst.Prefix, "sysconfdir=" + filepath.Join(inst.Prefix, "etc")}
		run(t, tree, "make", append([]string{"FORCE_GLIBC=1", "CPPFLAGS=-D_GNU_SOURCE -include /usr/include/bsd/string.h",
			"LDLIBS=-l:libbsd.a /usr/lib/x86_64-linux-gnu/libbsd.so"}, dirs...)...)
		run(t, tree, "make", append([]string{"install", "FORCE_GLIBC=1"}, dirs...)...)
	}
	if inst.Source == "" {
		inst.Source = strings.TrimSuffix(filepath.Join(out, "src", filepath.Base(src)), ".tar.gz")
	}
	// The capabilities Enroot's packages (enroot+caps) give its helpers, which
	// `enroot import` by a user needs: make setcap.
	for bin, caps := range map[string]string{"enroot-mksquashovlfs": "cap_sys_admin+pe", "enroot-aufs2ovlfs": "cap_sys_admin,cap_mknod+pe"} {
		out, err := exec.Command("setcap", caps, filepath.Join(inst.Bin(), bin)).CombinedOutput()
		require.NoError(t, err, "setcap %s: %s", bin, out)
	}
	// The stock extra hooks (Slurm, SHARP, MIG) and fstabs a site enables by copying.
	for _, pattern := range []string{"conf/hooks/extra/*.sh", "conf/mounts/extra/*.fstab"} {
		files, _ := filepath.Glob(filepath.Join(inst.Source, pattern))
		for _, f := range files {
			dir := "hooks.d"
			if strings.HasSuffix(f, ".fstab") {
				dir = "mounts.d"
				if _, err := os.Stat("/var/lib/lxcfs/proc"); err != nil && strings.Contains(f, "lxcfs") {
					continue // lxcfs only where installed
				}
			}
			copyFile(t, f, filepath.Join(inst.ConfigDir(), dir, filepath.Base(f)), 0o755)
		}
	}
	thirdparty.enroot = &inst
	return inst
}

// buildPyxis builds pyxis's SPANK plugin against Debian's libslurm and returns its path.
func buildPyxis(t *testing.T) string {
	t.Helper()
	thirdparty.Lock()
	defer thirdparty.Unlock()
	if thirdparty.pyxis != "" {
		return thirdparty.pyxis
	}
	src := thirdpartySource("PYXIS_SRC", "pyxis")
	if src == "" {
		t.Skip("no pyxis sources: set PYXIS_SRC or provide ../shared/thirdparty/pyxis-*.tar.gz")
	}
	needPackages(t, "libslurm-dev", "build-essential")
	out, _ := filepath.Abs(filepath.Join("..", "_output", "thirdparty"))
	so := filepath.Join(out, "spank_pyxis.so")
	if _, err := os.Stat(so); err != nil {
		tree := unpack(t, src, filepath.Join(out, "src"))
		run(t, tree, "make")
		copyFile(t, filepath.Join(tree, "spank_pyxis.so"), so, 0o755)
	}
	thirdparty.pyxis = so
	return so
}

func needPackages(t *testing.T, pkgs ...string) {
	t.Helper()
	var missing []string
	for _, p := range pkgs {
		if exec.Command("dpkg", "-s", p).Run() != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Skipf("Debian packages missing (make test-slurm-parity installs them): %s", strings.Join(missing, " "))
	}
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), tail(string(out), 3000))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o755))
	require.NoError(t, os.WriteFile(to, data, mode))
}
