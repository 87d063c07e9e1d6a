package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

func needSquashfsTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"mksquashfs", "unsquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install squashfs-tools)", tool)
		}
	}
}

func startRegistry(t *testing.T, opts testregistry.Options) *testregistry.Registry {
	t.Helper()
	reg, err := testregistry.Start(opts)
	require.NoError(t, err)
	t.Cleanup(reg.Close)
	return reg
}

func openStore(t *testing.T, root string, hosts map[string]Host) *Store {
	t.Helper()
	needSquashfsTools(t)
	s, err := Open(Options{Root: root, Hosts: hosts, SquashOptions: enroot.DefaultSquashOptions,
		MaxConcurrentDownloads: 4, UserAgent: "enroot-cri-test"})
	require.NoError(t, err)
	return s
}

func push(t *testing.T, reg *testregistry.Registry, repoTag string, cfg v1.Config, oci bool, layers ...[]testregistry.Entry) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, entries := range layers {
		l, err := testregistry.Layer(entries, testregistry.Gzip, oci)
		require.NoError(t, err)
		ls = append(ls, l)
	}
	img, err := testregistry.Image(cfg, oci, ls...)
	require.NoError(t, err)
	_, err = reg.Push(repoTag, img)
	require.NoError(t, err)
	return img
}

// listing returns "<mode> <owner> <path>" for every entry of a squashfs file, from
// unsquashfs -lln (numeric owners), keyed by path.
func listing(t *testing.T, sqsh string) map[string]string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-d", "", "-lln", sqsh).CombinedOutput()
	require.NoError(t, err, string(out))
	entries := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || len(f[0]) != 10 {
			continue
		}
		p := f[len(f)-1]
		if len(f) >= 8 && f[len(f)-2] == "->" {
			p = f[len(f)-3]
		}
		entries[strings.TrimPrefix(p, "/")] = f[0] + " " + f[1]
	}
	return entries
}

func catFile(t *testing.T, sqsh, path string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-cat", sqsh, path).Output()
	require.NoError(t, err, "unsquashfs -cat %s", path)
	return string(out)
}

func pull(t *testing.T, s *Store, ref string) *Image {
	t.Helper()
	img, err := s.Pull(context.Background(), ref, PullOptions{})
	require.NoError(t, err)
	return img
}

// dirEntries lists the names in dir (none when it does not exist).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func storeRoot(t *testing.T) string { return filepath.Join(t.TempDir(), "store") }

func osExecOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

const goarchForTest = runtime.GOARCH
