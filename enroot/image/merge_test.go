package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// The stream must build the image that applying the layers to a directory and
// squashing it builds (tree_test.go), for every rule a layer can exercise.
func TestMergedStreamMatchesTheLayersAppliedToATree(t *testing.T) {
	needSquashfsTools(t)
	if os.Geteuid() != 0 {
		t.Skip("the reference tree keeps the layers' owners only as root")
	}
	zeros := string(make([]byte, 1<<20))
	cfg := v1.Config{Env: []string{"PATH=/bin"}, WorkingDir: "/work/dir", Cmd: []string{"/bin/sh"}}
	cases := []struct {
		name   string
		layers [][]E
	}{
		{"every kind of entry", [][]E{{
			{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
			{Name: "etc/passwd", Body: "root:x:0:0::/root:/bin/sh\n"},
			{Name: "home/", Type: tar.TypeDir},
			{Name: "home/user/", Type: tar.TypeDir, Mode: 0o700, UID: 1002, GID: 1003},
			{Name: "home/user/.profile", Body: "x", Mode: 0o600, UID: 1002, GID: 1003},
			{Name: "bin/app", Body: "app", Mode: 0o4755, Xattrs: map[string]string{"user.test": "kept", "system.other": "dropped"}},
			{Name: "bin/sh", Type: tar.TypeSymlink, Linkname: "app"},
			{Name: "bin/hard", Type: tar.TypeLink, Linkname: "bin/app"},
			{Name: "run/fifo", Type: tar.TypeFifo, Mode: 0o600},
			{Name: "zero", Body: zeros},
			{Name: "implicit/parent/file", Body: "p"},
			{Name: "dev/console", Type: tar.TypeChar},
			{Name: "dev/junk", Body: "j"},
			{Name: "dev/", Type: tar.TypeDir},
		}}},
		{"whiteouts and opaque directories", [][]E{
			{
				{Name: "a/", Type: tar.TypeDir}, {Name: "a/one", Body: "1"}, {Name: "a/two", Body: "2"},
				{Name: "b/", Type: tar.TypeDir}, {Name: "b/lower", Body: "l"}, {Name: "b/sub/", Type: tar.TypeDir},
				{Name: "b/sub/deep", Body: "d"},
				{Name: "c/", Type: tar.TypeDir}, {Name: "c/x/", Type: tar.TypeDir}, {Name: "c/x/y", Body: "y"},
			},
			{
				{Name: "a/.wh.one"}, {Name: "a/.wh.absent"}, {Name: "c/.wh.x"},
				{Name: "b/.wh..wh..opq"}, {Name: "b/", Type: tar.TypeDir, Mode: 0o750}, {Name: "b/new", Body: "n"},
				{Name: "b/sub/", Type: tar.TypeDir}, {Name: "b/sub/kept", Body: "k"},
				{Name: "missing/dir/.wh.file"},
			},
			{
				{Name: "b/late", Body: "late"}, {Name: "c/x/", Type: tar.TypeDir}, {Name: "c/.wh..wh..opq"},
			},
		}},
		{"replacements", [][]E{
			{
				{Name: "f2d", Body: "file"}, {Name: "d2f/", Type: tar.TypeDir}, {Name: "d2f/child", Body: "c"},
				{Name: "d2l/", Type: tar.TypeDir}, {Name: "d2l/child", Body: "c"}, {Name: "target/", Type: tar.TypeDir},
				{Name: "l2d", Type: tar.TypeSymlink, Linkname: "target"}, {Name: "dup", Body: "first"},
				{Name: "dup", Body: "second"}, {Name: "gone", Body: "g"},
			},
			{
				{Name: "f2d/", Type: tar.TypeDir}, {Name: "f2d/now", Body: "n"}, {Name: "d2f", Body: "now a file"},
				{Name: "d2l", Type: tar.TypeSymlink, Linkname: "/target"}, {Name: "l2d/", Type: tar.TypeDir, Mode: 0o711},
				{Name: "gone", Type: tar.TypeBlock},
			},
		}},
		{"symlinks on the way resolve inside the image", [][]E{
			{
				{Name: "usr/", Type: tar.TypeDir}, {Name: "usr/lib/", Type: tar.TypeDir},
				{Name: "lib", Type: tar.TypeSymlink, Linkname: "usr/lib"},
				{Name: "abs", Type: tar.TypeSymlink, Linkname: "/usr"},
				{Name: "climb", Type: tar.TypeSymlink, Linkname: "../../../../usr/lib"},
				{Name: "usr/lib/chain", Type: tar.TypeSymlink, Linkname: "../../abs/lib"},
			},
			{
				{Name: "lib/a.so", Body: "a"}, {Name: "abs/lib/b.so", Body: "b"}, {Name: "climb/c.so", Body: "c"},
				{Name: "usr/lib/chain/d.so", Body: "d"}, {Name: "lib/.wh.a.so"}, {Name: "lib/e.so", Body: "e"},
			},
		}},
		{"hard links across layers", [][]E{
			{{Name: "a", Body: "old a", Mode: 0o640, UID: 5, GID: 6}, {Name: "x", Body: "x"}},
			{{Name: "b", Type: tar.TypeLink, Linkname: "a"}, {Name: "c", Type: tar.TypeLink, Linkname: "/b"},
				{Name: "y", Type: tar.TypeLink, Linkname: "x"}},
			{{Name: "a", Body: "new a"}, {Name: ".wh.x"}},
		}},
		{"the image's own Enroot files are replaced", [][]E{{
			{Name: "private/", Type: tar.TypeDir}, {Name: "private/etc/", Type: tar.TypeDir},
			{Name: "etc", Type: tar.TypeSymlink, Linkname: "/private/etc"},
			{Name: "private/etc/rc", Body: "exec evil\n", Mode: 0o777, UID: 1000},
			{Name: "private/etc/fstab", Type: tar.TypeSymlink, Linkname: "/host/fstab"},
			{Name: "work", Type: tar.TypeSymlink, Linkname: "private"},
		}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var layers [][]byte
			for _, entries := range c.layers {
				raw, err := testregistry.Tar(entries)
				require.NoError(t, err)
				layers = append(layers, raw)
			}
			want := squashTree(t, dir, layers, cfg)
			got := squashMerged(t, dir, layers, cfg)
			assert.Equal(t, describe(t, want), describe(t, got))
		})
	}
}

// squashTree applies layers to a directory, adds Enroot's files and squashes it.
func squashTree(t *testing.T, dir string, layers [][]byte, cfg v1.Config) string {
	t.Helper()
	root := filepath.Join(dir, "tree")
	require.NoError(t, os.Mkdir(root, 0o755))
	tr, err := openTree(root)
	require.NoError(t, err)
	defer tr.Close()
	for _, l := range layers {
		require.NoError(t, tr.applyLayer(bytes.NewReader(l)))
	}
	require.NoError(t, tr.writeEnrootFiles(enrootFiles(cfg), cfg.WorkingDir))
	out := filepath.Join(dir, "tree.sqsh")
	require.NoError(t, squash(context.Background(), root, out, enroot.DefaultSquashOptions))
	return out
}

// squashMerged builds the same image as a pull does: merged, then streamed.
func squashMerged(t *testing.T, dir string, layers [][]byte, cfg v1.Config) string {
	t.Helper()
	m := newMerger(nil)
	for i, l := range layers {
		require.NoError(t, m.indexLayer(i, bytes.NewReader(l)))
	}
	generated, err := generatedLayer(enrootFiles(cfg))
	require.NoError(t, err)
	require.NoError(t, m.indexLayer(len(layers), bytes.NewReader(generated)))
	require.NoError(t, m.mkdirAll(strings.TrimPrefix(cfg.WorkingDir, "/")))
	all := append(layers, generated)
	open := func(i int) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(all[i])), nil }
	out := filepath.Join(dir, "merged.sqsh")
	require.NoError(t, streamSquashfs(context.Background(), m.plan(), len(all), open, out, enroot.DefaultSquashOptions, nil))
	return out
}

// describe unpacks a squashfs file and describes each entry: type, permissions,
// owner, link target, content digest, hard links and the user.* attributes (not
// directories' times, which the tree took from the clock).
func describe(t *testing.T, sqsh string) []string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "x")
	out, err := exec.Command("unsquashfs", "-no-progress", "-d", dir, sqsh).CombinedOutput()
	require.NoError(t, err, string(out))
	var lines []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := d.Info()
		require.NoError(t, err)
		st := info.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %v %d:%d", rel, info.Mode(), st.Uid, st.Gid)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			require.NoError(t, err)
			line += " -> " + target
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			require.NoError(t, err)
			line += fmt.Sprintf(" %d bytes %x links=%d", len(data), sha256.Sum256(data), st.Nlink)
			if info.ModTime().Unix() == testregistry.EntryTime {
				line += " the entry's time" // the generated files take the clock's
			}
		}
		if v := make([]byte, 256); d.Type()&fs.ModeSymlink == 0 {
			if n, err := unix.Lgetxattr(p, "user.test", v); err == nil {
				line += " user.test=" + string(v[:n])
			}
		}
		lines = append(lines, line)
		return nil
	}))
	sort.Strings(lines)
	return lines
}

// Whatever two layers hold, the merged stream names only paths inside the image, each
// once, never a device node or anything under dev/, and every hard link names a file
// written before it.
func FuzzMergeLayers(f *testing.F) {
	f.Add(tarBytes(f, &tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Size: 4, Mode: 0o644}),
		tarBytes(f, &tar.Header{Name: "etc/.wh.passwd", Typeflag: tar.TypeReg},
			&tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "etc/passwd"}))
	f.Add(tarBytes(f, &tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../../outside"},
		&tar.Header{Name: "evil/x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}),
		tarBytes(f, &tar.Header{Name: "loop", Typeflag: tar.TypeSymlink, Linkname: "loop"},
			&tar.Header{Name: "loop/x", Typeflag: tar.TypeReg}))
	// Each step names the link twice: bounded by depth alone, 2^40 steps.
	f.Add(tarBytes(f, &tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "./a/../a/."}),
		tarBytes(f, &tar.Header{Name: "a/x", Typeflag: tar.TypeReg}))
	f.Add(tarBytes(f, &tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 1},
		&tar.Header{Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}),
		tarBytes(f, &tar.Header{Name: "a/.wh..wh..opq", Typeflag: tar.TypeReg},
			&tar.Header{Name: ".wh.a", Typeflag: tar.TypeReg},
			&tar.Header{Name: "l", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"},
			&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar},
			&tar.Header{Name: "c", Typeflag: tar.TypeLink, Linkname: "b"}))
	f.Fuzz(func(t *testing.T, lower, upper []byte) {
		layers := [][]byte{lower, upper}
		m := newMerger(newBudget(Limits{MaxBytes: 1 << 20, MaxEntries: 1000}, t.TempDir()))
		for i, l := range layers {
			if err := m.indexLayer(i, bytes.NewReader(l)); err != nil {
				return
			}
		}
		open := func(i int) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layers[i])), nil }
		var out bytes.Buffer
		if err := writeMerged(m.plan(), len(layers), open, &out, nil); err != nil {
			t.Fatalf("the second read of layers the first accepted failed: %v", err)
		}
		written := map[string]byte{}
		tr := tar.NewReader(&out)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			name := strings.TrimSuffix(hdr.Name, "/")
			if clean, err := cleanName(name); err != nil || clean != name || name == "" {
				t.Fatalf("the stream names %q", hdr.Name)
			}
			if name == "dev" || strings.HasPrefix(name, "dev/") {
				if hdr.Typeflag != tar.TypeDir || name != "dev" {
					t.Fatalf("the stream takes %q from under dev/", hdr.Name)
				}
			}
			if _, dup := written[name]; dup {
				t.Fatalf("the stream writes %q twice", name)
			}
			switch hdr.Typeflag {
			case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeFifo:
			case tar.TypeLink:
				if typ, ok := written[hdr.Linkname]; !ok || typ == tar.TypeDir || typ == tar.TypeLink {
					t.Fatalf("hard link %q names %q, not a file written before it", name, hdr.Linkname)
				}
			default:
				t.Fatalf("the stream writes %q of type %q", name, hdr.Typeflag)
			}
			written[name] = hdr.Typeflag
		}
	})
}
