package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

func TestRemoveByTagIDAndDigest(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	push(t, reg, "rm/app:a", v1.Config{}, true, []E{{Name: "f", Body: "x"}})
	push(t, reg, "rm/app:b", v1.Config{}, true, []E{{Name: "f", Body: "x"}})
	push(t, reg, "rm/other:1", v1.Config{}, true, []E{{Name: "g", Body: "y"}})
	root := storeRoot(t)
	s := openStore(t, root, nil)
	a := pull(t, s, reg.Host+"/rm/app:a")
	b := pull(t, s, reg.Host+"/rm/app:b")
	require.Equal(t, a.ID, b.ID, "two tags of one image")
	other := pull(t, s, reg.Host+"/rm/other:1")

	got, err := s.Get(a.ID)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{reg.Host + "/rm/app:a", reg.Host + "/rm/app:b"}, got.RepoTags)
	for _, ref := range []string{a.ID, a.ID[len("sha256:"):], a.ID[:19], reg.Host + "/rm/app:b", got.RepoDigests[0]} {
		found, err := s.Get(ref)
		require.NoError(t, err, ref)
		assert.Equal(t, a.ID, found.ID, ref)
	}

	require.NoError(t, s.Remove(reg.Host+"/rm/app:a"))
	got, err = s.Get(a.ID)
	require.NoError(t, err, "removing one tag keeps the image")
	assert.Equal(t, []string{reg.Host + "/rm/app:b"}, got.RepoTags)
	_, err = s.Get(reg.Host + "/rm/app:a")
	assert.ErrorIs(t, err, errdefs.ErrNotFound)

	require.NoError(t, s.Remove(reg.Host+"/rm/app:b"))
	_, err = s.Get(a.ID)
	assert.ErrorIs(t, err, errdefs.ErrNotFound, "removing the last tag removes the image")
	assert.NoFileExists(t, a.Squashfs)

	require.NoError(t, s.Remove(other.RepoDigests[0]))
	assert.NoFileExists(t, other.Squashfs)
	assert.Empty(t, s.List())
	assert.Empty(t, dirEntries(t, filepath.Join(root, "blobs")), "unused blobs are pruned")
	assert.Empty(t, dirEntries(t, filepath.Join(root, "images")))

	require.NoError(t, s.Remove("never/pulled:1"), "removing an unknown image is not an error")
	require.NoError(t, s.Remove("sha256:"+hex64))
}

func TestTagMovesToTheNewImage(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	s := openStore(t, storeRoot(t), nil)
	push(t, reg, "mv/app:latest", v1.Config{}, true, []E{{Name: "v", Body: "1"}})
	old := pull(t, s, reg.Host+"/mv/app")
	push(t, reg, "mv/app:latest", v1.Config{}, true, []E{{Name: "v", Body: "2"}})
	cur := pull(t, s, reg.Host+"/mv/app:latest")
	require.NotEqual(t, old.ID, cur.ID)
	prev, err := s.Get(old.ID)
	require.NoError(t, err)
	assert.Empty(t, prev.RepoTags, "the tag moved off the old image")
	assert.Equal(t, []string{reg.Host + "/mv/app:latest"}, cur.RepoTags)
}

func TestStoreSurvivesRestartAndRemovesDebris(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	push(t, reg, "keep/app:1", v1.Config{Env: []string{"A=1"}}, true, []E{{Name: "f", Body: "x"}})
	root := storeRoot(t)
	s := openStore(t, root, nil)
	img := pull(t, s, reg.Host+"/keep/app:1")

	// What a pull killed with -9 leaves: a staging tree, a squashfs without record,
	// a half-written record, a half-downloaded blob, a blob no image uses.
	debris := []string{
		filepath.Join(root, "tmp", "pull-123", "rootfs", "etc", "x"),
		filepath.Join(root, "images", hex64+".sqsh"),
		filepath.Join(root, "images", ".tmp-"+hex64+".json-999"),
		filepath.Join(root, "blobs", ".tmp-blob-42"),
		filepath.Join(root, "blobs", "sha256-"+hex64),
	}
	for _, p := range debris {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("partial"), 0o600))
	}

	s2 := openStore(t, root, nil)
	got, err := s2.Get(reg.Host + "/keep/app:1")
	require.NoError(t, err)
	assert.Equal(t, img, got)
	for _, p := range debris {
		assert.NoFileExists(t, p)
	}
	assert.Empty(t, dirEntries(t, filepath.Join(root, "tmp")))
	assert.Len(t, dirEntries(t, filepath.Join(root, "blobs")), 1, "the image's own blob stays")
}

// hostileLayer is a layer that tries to write outside the image tree.
type hostileLayer struct {
	name    string
	entries []E
	wantErr string
}

func TestHostileLayersWriteNothingOutside(t *testing.T) {
	outside := t.TempDir() // a host directory the layers aim at
	victim := filepath.Join(outside, "victim")
	require.NoError(t, os.WriteFile(victim, []byte("original"), 0o600))
	rel := func(n int) string { // a ../ chain from the staging tree to outside
		p := ""
		for range n {
			p += "../"
		}
		return p + outside[1:]
	}
	cases := []hostileLayer{
		{"dotdot escape", []E{{Name: rel(12) + "/pwned", Body: "x"}}, "climbs out"},
		{"dotdot inside name", []E{{Name: "a/../../../pwned", Body: "x"}}, "climbs out"},
		{"symlink parent absolute", []E{
			{Name: "esc", Type: tar.TypeSymlink, Linkname: outside},
			{Name: "esc/pwned", Body: "x"}}, ""},
		{"symlink parent relative", []E{
			{Name: "esc", Type: tar.TypeSymlink, Linkname: rel(12)},
			{Name: "esc/pwned", Body: "x"}}, ""},
		{"symlink then overwrite victim", []E{
			{Name: "v", Type: tar.TypeSymlink, Linkname: victim},
			{Name: "v", Body: "overwritten"}}, ""},
		{"hardlink to host file", []E{{Name: "shadow", Type: tar.TypeLink, Linkname: "/etc/shadow"}}, "hard link to"},
		{"hardlink dotdot", []E{{Name: "shadow", Type: tar.TypeLink, Linkname: rel(12) + "/victim"}}, "climbs out"},
		{"hardlink through symlink", []E{
			{Name: "esc", Type: tar.TypeSymlink, Linkname: outside},
			{Name: "v", Type: tar.TypeLink, Linkname: "esc/victim"}}, "hard link to"},
		{"device node", []E{{Name: "null", Type: tar.TypeChar}, {Name: "sda", Type: tar.TypeBlock}}, ""},
	}
	reg := startRegistry(t, testregistry.Options{})
	root := storeRoot(t)
	s := openStore(t, root, nil)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tag := fmt.Sprintf("hostile/case:%d", i)
			push(t, reg, tag, v1.Config{}, true, tc.entries)
			img, err := s.Pull(context.Background(), reg.Host+"/"+tag, PullOptions{})
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.ErrorContains(t, err, tc.wantErr)
				assert.ErrorIs(t, err, errdefs.ErrInvalidArgument)
			} else if err == nil {
				ls := listing(t, img.Squashfs)
				assert.NotContains(t, ls, "null")
				assert.NotContains(t, ls, "sda")
				require.NoError(t, s.Remove(img.ID))
			}
			assert.Equal(t, []string{"victim"}, dirEntries(t, outside), "nothing new outside the store")
			data, err := os.ReadFile(victim)
			require.NoError(t, err)
			assert.Equal(t, "original", string(data))
			assert.Empty(t, dirEntries(t, filepath.Join(root, "tmp")), "a failed pull leaves no staging tree")
			assert.Empty(t, dirEntries(t, filepath.Join(root, "images")), "and no image")
		})
	}
}

// gnuSparseTar is a tar holding one old-GNU sparse file of realSize bytes whose only
// data is "tail" at its end: archive/tar cannot write sparse files, so the header is
// made by hand.
func gnuSparseTar(t *testing.T, name string, realSize int64) []byte {
	t.Helper()
	data := []byte("tail")
	blk := make([]byte, 512)
	copy(blk[0:], name)
	copy(blk[100:], "0000644\x00")
	copy(blk[108:], "0000000\x00")
	copy(blk[116:], "0000000\x00")
	copy(blk[124:], fmt.Sprintf("%011o\x00", len(data)))
	copy(blk[136:], fmt.Sprintf("%011o\x00", 1700000000))
	blk[156] = 'S'
	copy(blk[257:], "ustar  \x00")
	copy(blk[386:], fmt.Sprintf("%011o\x00", realSize-int64(len(data)))) // sparse[0].offset
	copy(blk[398:], fmt.Sprintf("%011o\x00", len(data)))                 // sparse[0].numbytes
	copy(blk[483:], fmt.Sprintf("%011o\x00", realSize))                  // realsize
	copy(blk[148:], "        ")
	sum := 0
	for _, b := range blk {
		sum += int(b)
	}
	copy(blk[148:], fmt.Sprintf("%06o\x00 ", sum))
	var buf bytes.Buffer
	buf.Write(blk)
	body := make([]byte, 512)
	copy(body, data)
	buf.Write(body)
	buf.Write(make([]byte, 1024))
	return buf.Bytes()
}

func TestHugeSparseFileTakesNoSpace(t *testing.T) {
	const size = 4 << 30
	reg := startRegistry(t, testregistry.Options{})
	l, err := testregistry.LayerFromTar(gnuSparseTar(t, "huge", size), testregistry.Gzip, true)
	require.NoError(t, err)
	im, err := testregistry.Image(v1.Config{}, true, l)
	require.NoError(t, err)
	_, err = reg.Push("sparse/bomb:1", im)
	require.NoError(t, err)
	s := openStore(t, storeRoot(t), nil)
	img := pull(t, s, reg.Host+"/sparse/bomb:1")

	assert.Less(t, img.Size, int64(1<<20), "the squashfs of a 4 GiB sparse file is small")
	u, err := s.Usage()
	require.NoError(t, err)
	assert.Less(t, u.Bytes, uint64(4<<20), "the store holds no 4 GiB of zeros")
	out, err := osExecOutput("unsquashfs", "-lls", img.Squashfs, "huge")
	require.NoError(t, err)
	assert.Contains(t, out, strconv.Itoa(size))
}
