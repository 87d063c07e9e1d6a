package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

type E = testregistry.Entry

// The streamed squashfs is a filesystem the kernel and squashfuse (what Enroot and
// pyxis mount with) both read.
func TestAPulledImageMountsWithTheKernelAndSquashfuse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	reg := startRegistry(t, testregistry.Options{})
	push(t, reg, "mount/app:1", v1.Config{Env: []string{"A=1"}}, true,
		[]E{{Name: "dir/", Type: tar.TypeDir}, {Name: "dir/file", Body: "lower"}, {Name: "zero", Body: string(make([]byte, 4<<20))}},
		[]E{{Name: "dir/file", Body: "upper"}, {Name: "dir/link", Type: tar.TypeLink, Linkname: "dir/file"}})
	s := openStore(t, storeRoot(t), nil)
	img := pull(t, s, reg.Host+"/mount/app:1")
	st, err := os.Stat(img.Squashfs)
	require.NoError(t, err)
	assert.Less(t, st.Size(), int64(1<<20), "the zero-filled file is stored sparse")

	mounters := map[string][]string{"kernel": {"mount", "-t", "squashfs", "-o", "loop,ro", img.Squashfs}}
	if _, err := exec.LookPath("squashfuse"); err == nil {
		mounters["squashfuse"] = []string{"squashfuse", img.Squashfs}
	} else {
		t.Log("squashfuse is not installed: only the kernel's mount is tried")
	}
	for name, argv := range mounters {
		t.Run(name, func(t *testing.T) {
			mnt := t.TempDir()
			out, err := exec.Command(argv[0], append(argv[1:], mnt)...).CombinedOutput()
			require.NoError(t, err, string(out))
			t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
			data, err := os.ReadFile(filepath.Join(mnt, "dir/link"))
			require.NoError(t, err)
			assert.Equal(t, "upper", string(data))
			env, err := os.ReadFile(filepath.Join(mnt, "etc/environment"))
			require.NoError(t, err)
			assert.Equal(t, "A=1\n", string(env))
			zero, err := os.ReadFile(filepath.Join(mnt, "zero"))
			require.NoError(t, err)
			assert.Equal(t, make([]byte, 4<<20), zero)
		})
	}
}

func TestPullAppliesLayersAndWritesEnrootFiles(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	cfg := v1.Config{
		Env: []string{"PATH=/bin", "MODE=test"}, Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"},
		WorkingDir: "/work/dir", Volumes: map[string]struct{}{"/data": {}},
		Labels: map[string]string{"org.example": "yes"}, User: "1002", StopSignal: "SIGQUIT",
	}
	push(t, reg, "team/app:1", cfg, false,
		[]E{
			{Name: "a/", Type: tar.TypeDir}, {Name: "a/one", Body: "1"}, {Name: "a/two", Body: "2"},
			{Name: "b/", Type: tar.TypeDir}, {Name: "b/lower", Body: "lower"},
			{Name: "c/", Type: tar.TypeDir}, {Name: "c/sub/", Type: tar.TypeDir}, {Name: "c/sub/deep", Body: "deep"},
			{Name: "bin/", Type: tar.TypeDir}, {Name: "bin/app", Body: "#!/bin/sh\n", Mode: 0o4755, UID: 0},
			{Name: "home/", Type: tar.TypeDir}, {Name: "home/user/", Type: tar.TypeDir, UID: 1002, GID: 1002, Mode: 0o700},
			{Name: "dev/", Type: tar.TypeDir}, {Name: "dev/console", Type: tar.TypeChar},
			{Name: "dev/junk", Body: "skipped like enroot"},
			{Name: "fifo", Type: tar.TypeFifo},
		},
		[]E{
			{Name: "a/.wh.one"},                 // whiteout of a lower file
			{Name: "b/new", Body: "upper"},      // written before the opaque marker
			{Name: "b/.wh..wh..opq"},            // hides b/lower only
			{Name: "c/sub/", Type: tar.TypeDir}, // re-declared in this layer
			{Name: "c/.wh..wh..opq"},            // c/sub/deep came from below: gone
			{Name: "link", Type: tar.TypeSymlink, Linkname: "/a/two"},
			{Name: "hard", Type: tar.TypeLink, Linkname: "a/two"},
		},
	)
	s := openStore(t, storeRoot(t), nil)
	img := pull(t, s, reg.Host+"/team/app:1")

	ls := listing(t, img.Squashfs)
	for _, p := range []string{"a/two", "b/new", "c/sub", "link", "hard", "fifo", "bin/app", "etc/rc", "etc/rc.local",
		"etc/environment", "etc/fstab", "work/dir", "dev"} {
		assert.Contains(t, ls, p)
	}
	for _, p := range []string{"a/one", "b/lower", "c/sub/deep", "dev/console", "dev/junk", "a/.wh.one", "b/.wh..wh..opq"} {
		assert.NotContains(t, ls, p)
	}
	assert.Equal(t, "-rwsr-xr-x 0/0", ls["bin/app"], "modes, set-id bits and owners are kept")
	if os.Geteuid() == 0 {
		assert.Equal(t, "drwx------ 1002/1002", ls["home/user"])
	}
	assert.Equal(t, "2", catFile(t, img.Squashfs, "hard"))
	assert.Equal(t, "PATH=/bin\nMODE=test\n", catFile(t, img.Squashfs, "etc/environment"))
	assert.Equal(t, "${ENROOT_ROOTFS}/data /data none x-create=dir,bind,rw,nosuid,nodev\n", catFile(t, img.Squashfs, "etc/fstab"))
	assert.Contains(t, catFile(t, img.Squashfs, "etc/rc"), "exec '/bin/app' '--serve'")
	assert.Contains(t, catFile(t, img.Squashfs, "etc/rc"), "# org.example yes")

	assert.Equal(t, []string{reg.Host + "/team/app:1"}, img.RepoTags)
	require.Len(t, img.RepoDigests, 1)
	assert.Regexp(t, `^`+reg.Host+`/team/app@sha256:[0-9a-f]{64}$`, img.RepoDigests[0])
	assert.Equal(t, "1002", img.User)
	assert.Equal(t, "SIGQUIT", img.StopSignal)
	assert.Equal(t, []string{"/data"}, img.Volumes)
	assert.Equal(t, "/work/dir", img.WorkingDir)
	st, err := os.Stat(img.Squashfs)
	require.NoError(t, err)
	assert.Equal(t, st.Size(), img.Size)
	assert.Empty(t, dirEntries(t, filepath.Join(s.opts.Root, "tmp")), "no staging tree remains")
}

func TestPullMediaTypesAndCompressions(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	s := openStore(t, storeRoot(t), nil)
	for _, oci := range []bool{false, true} {
		for _, c := range []testregistry.Compression{testregistry.Gzip, testregistry.Zstd, testregistry.Uncompressed} {
			if c == testregistry.Zstd && !oci {
				continue // Docker schema 2 has no zstd media type
			}
			t.Run(fmt.Sprintf("oci=%v/%s", oci, c), func(t *testing.T) {
				l, err := testregistry.Layer([]E{{Name: "marker", Body: fmt.Sprintf("%v-%s", oci, c)}}, c, oci)
				require.NoError(t, err)
				im, err := testregistry.Image(v1.Config{Cmd: []string{"/marker"}}, oci, l)
				require.NoError(t, err)
				tag := fmt.Sprintf("media/%v-%s:v1", oci, c)
				_, err = reg.Push(tag, im)
				require.NoError(t, err)
				img := pull(t, s, reg.Host+"/"+tag)
				assert.Equal(t, fmt.Sprintf("%v-%s", oci, c), catFile(t, img.Squashfs, "marker"))
			})
		}
	}
}

func TestPullManifestListPicksThisPlatform(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	build := func(arch string) v1.Image {
		l, err := testregistry.Layer([]E{{Name: "arch", Body: arch}}, testregistry.Gzip, true)
		require.NoError(t, err)
		im, err := testregistry.Image(v1.Config{}, true, l)
		require.NoError(t, err)
		cf, _ := im.ConfigFile()
		cf = cf.DeepCopy()
		cf.Architecture = arch
		im, err = mutate.ConfigFile(im, cf)
		require.NoError(t, err)
		return im
	}
	other := "arm64"
	if goarchForTest == "arm64" {
		other = "amd64"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: build(other), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: build(goarchForTest), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: goarchForTest}}},
	)
	_, err := reg.PushIndex("multi/arch:1", idx)
	require.NoError(t, err)
	idxDigest, err := idx.Digest()
	require.NoError(t, err)

	s := openStore(t, storeRoot(t), nil)
	img := pull(t, s, reg.Host+"/multi/arch:1")
	assert.Equal(t, goarchForTest, catFile(t, img.Squashfs, "arch"))
	assert.Equal(t, []string{reg.Host + "/multi/arch@" + idxDigest.String()}, img.RepoDigests,
		"the repo digest is the index's, as the kubelet pins it")

	byDigest := pull(t, s, reg.Host+"/multi/arch@"+idxDigest.String())
	assert.Equal(t, img.ID, byDigest.ID)
	tagged := pull(t, s, reg.Host+"/multi/arch:1@"+idxDigest.String())
	assert.Equal(t, img.ID, tagged.ID, "name:tag@digest pulls by digest")
}

func TestPullWithCredentials(t *testing.T) {
	for _, mode := range []testregistry.Auth{testregistry.BasicAuth, testregistry.TokenAuth} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			reg := startRegistry(t, testregistry.Options{Auth: mode, User: "alice", Password: "s3cret"})
			push(t, reg, "private/app:1", v1.Config{}, true, []E{{Name: "secret", Body: "ok"}})
			s := openStore(t, storeRoot(t), nil)
			ref := reg.Host + "/private/app:1"

			_, err := s.Pull(context.Background(), ref, PullOptions{})
			assert.ErrorIs(t, err, errdefs.ErrPermissionDenied, "anonymous pull: %v", err)
			_, err = s.Pull(context.Background(), ref, PullOptions{Auth: Auth{Username: "alice", Password: "wrong"}})
			assert.ErrorIs(t, err, errdefs.ErrPermissionDenied)

			img, err := s.Pull(context.Background(), ref, PullOptions{Auth: Auth{Username: "alice", Password: "s3cret"}})
			require.NoError(t, err)
			assert.Equal(t, "ok", catFile(t, img.Squashfs, "secret"))
			// The base64 "auth" form the kubelet may send instead.
			_, err = s.Pull(context.Background(), ref, PullOptions{Auth: Auth{Auth: "YWxpY2U6czNjcmV0"}})
			require.NoError(t, err)
		})
	}
}

func TestPullThroughMirrorKeepsTheRealName(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	push(t, reg, "e2e-test-images/busybox:1.29-2", v1.Config{}, false, []E{{Name: "from-mirror", Body: "yes"}})
	s := openStore(t, storeRoot(t), map[string]Host{
		"registry.k8s.io": {Mirrors: []string{"http://127.0.0.1:1", "http://" + reg.Host}},
	})
	img := pull(t, s, "registry.k8s.io/e2e-test-images/busybox:1.29-2")
	assert.Equal(t, []string{"registry.k8s.io/e2e-test-images/busybox:1.29-2"}, img.RepoTags)
	assert.Regexp(t, `^registry.k8s.io/e2e-test-images/busybox@sha256:`, img.RepoDigests[0])
	assert.Equal(t, "yes", catFile(t, img.Squashfs, "from-mirror"))

	_, err := s.Pull(context.Background(), "registry.k8s.io/e2e-test-images/absent:1", PullOptions{})
	assert.ErrorIs(t, err, errdefs.ErrNotFound)
}

func TestConcurrentPullsDownloadOnceAndShareLayers(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	base, err := testregistry.Layer([]E{{Name: "base", Body: "shared base layer"}}, testregistry.Gzip, true)
	require.NoError(t, err)
	top, err := testregistry.Layer([]E{{Name: "top", Body: "one"}}, testregistry.Gzip, true)
	require.NoError(t, err)
	other, err := testregistry.Layer([]E{{Name: "top", Body: "two"}}, testregistry.Gzip, true)
	require.NoError(t, err)
	one, err := testregistry.Image(v1.Config{}, true, base, top)
	require.NoError(t, err)
	two, err := testregistry.Image(v1.Config{}, true, base, other)
	require.NoError(t, err)
	_, err = reg.Push("app/one:1", one)
	require.NoError(t, err)
	_, err = reg.Push("app/two:1", two)
	require.NoError(t, err)

	s := openStore(t, storeRoot(t), nil)
	var wg sync.WaitGroup
	ids := make([]string, 6)
	for i := range ids {
		wg.Go(func() { ids[i] = pull(t, s, reg.Host+"/app/one:1").ID })
	}
	wg.Wait()
	for _, id := range ids {
		assert.Equal(t, ids[0], id)
	}
	baseDigest, _ := base.Digest()
	topDigest, _ := top.Digest()
	assert.Equal(t, 1, reg.BlobGets(baseDigest.String()), "concurrent pulls fetch a layer once")
	assert.Equal(t, 1, reg.BlobGets(topDigest.String()))

	pull(t, s, reg.Host+"/app/two:1")
	assert.Equal(t, 1, reg.BlobGets(baseDigest.String()), "a later pull reuses the cached shared layer")
	assert.Len(t, s.List(), 2)
}

func TestPullUnknownImage(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	s := openStore(t, storeRoot(t), nil)
	_, err := s.Pull(context.Background(), reg.Host+"/nothing/here:1", PullOptions{})
	assert.ErrorIs(t, err, errdefs.ErrNotFound)
	_, err = s.Pull(context.Background(), "Bad Name", PullOptions{})
	assert.ErrorIs(t, err, errdefs.ErrInvalidArgument)
}

func TestPullReportsProgress(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{BlobStall: 300 * time.Millisecond})
	push(t, reg, "slow/app:1", v1.Config{}, true, []E{{Name: "big", Body: incompressible(64 << 10)}})
	s := openStore(t, storeRoot(t), nil)
	var mu sync.Mutex
	var reports []Progress
	var built Stats
	_, err := s.Pull(context.Background(), reg.Host+"/slow/app:1", PullOptions{
		ProgressInterval: 50 * time.Millisecond,
		OnProgress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, p)
		},
		OnBuilt: func(st Stats) { built = st },
	})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, reports, "a pull slower than the interval reports progress")
	assert.Equal(t, 1, reports[0].Layers)
	assert.Equal(t, reports[0].Image, reg.Host+"/slow/app:1")
	assert.GreaterOrEqual(t, reports[0].Bytes, int64(testregistry.StallAfter), "bytes arrived before the stall")
	assert.Equal(t, 1, built.Layers)
	assert.Greater(t, built.Downloaded, int64(0))
	assert.GreaterOrEqual(t, built.Download, 300*time.Millisecond)
	assert.Greater(t, built.Bytes, int64(64<<10), "the image holds the file and the generated ones")
}

// incompressible returns n pseudo-random bytes, so that a layer is about n bytes.
func incompressible(n int) string {
	rng := rand.New(rand.NewPCG(7, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

func TestInsecureRegistryOverUntrustedTLS(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{TLS: true})
	push(t, reg, "tls/app:1", v1.Config{}, true, []E{{Name: "f", Body: "tls"}})
	ref := reg.Host + "/tls/app:1"

	strict := openStore(t, storeRoot(t), nil)
	_, err := strict.Pull(context.Background(), ref, PullOptions{})
	require.Error(t, err, "an untrusted certificate is refused unless the host is insecure")
	assert.ErrorContains(t, err, "certificate")

	lax := openStore(t, storeRoot(t), map[string]Host{reg.Host: {Insecure: true}})
	img, err := lax.Pull(context.Background(), ref, PullOptions{})
	require.NoError(t, err)
	assert.Equal(t, "tls", catFile(t, img.Squashfs, "f"))
}

func TestPullRefusesALayerThatDoesNotMatchItsDiffID(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	raw, err := testregistry.Tar([]E{{Name: "f", Body: "x"}})
	require.NoError(t, err)
	// static layers claim their compressed digest as diff ID: wrong for a gzip layer.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(raw)
	require.NoError(t, zw.Close())
	im, err := testregistry.Image(v1.Config{}, true, static.NewLayer(buf.Bytes(), types.OCILayer))
	require.NoError(t, err)
	_, err = reg.Push("bad/diffid:1", im)
	require.NoError(t, err)
	root := storeRoot(t)
	s := openStore(t, root, nil)
	_, err = s.Pull(context.Background(), reg.Host+"/bad/diffid:1", PullOptions{})
	require.Error(t, err)
	assert.ErrorContains(t, err, "but the image config says")
	assert.Empty(t, s.List())
	assert.Empty(t, dirEntries(t, filepath.Join(root, "images")))

	// An uncompressed layer is its own content: its digest must be the diff ID.
	wrong := "sha256:" + strings.Repeat("ab", 32)
	plain, err := testregistry.CompressedLayer(raw, wrong)
	require.NoError(t, err)
	im, err = testregistry.Image(v1.Config{}, true, plain)
	require.NoError(t, err)
	_, err = reg.Push("bad/diffid:2", im)
	require.NoError(t, err)
	_, err = s.Pull(context.Background(), reg.Host+"/bad/diffid:2", PullOptions{})
	assert.ErrorContains(t, err, "but the image config says "+wrong)
	assert.Empty(t, s.List())
}
