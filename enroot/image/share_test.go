package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// The configuration Enroot writes into an image is read back to the same entrypoint,
// command, working directory, environment and volumes.
func TestEnrootConfigRoundTrip(t *testing.T) {
	for _, cfg := range []v1.Config{
		{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo 'it''s' \"$HOME\" && ls *"}, WorkingDir: "/work dir",
			Env: []string{"A=1", "B=two words", "C="}, Volumes: map[string]struct{}{"/data": {}, "/cache": {}}},
		{Cmd: []string{"python3", "-m", "http.server"}},
		{Entrypoint: []string{"/entry"}},
		{Cmd: []string{"printf", "a\tb\nc\x01\\"}, Labels: map[string]string{"org.x": "y\nz"}},
		{},
	} {
		got := enrootConfig(enrootFiles(cfg))
		want := cfg
		if len(want.Entrypoint) == 0 && len(want.Cmd) == 0 {
			want.Cmd = []string{"/bin/sh"} // what enroot import runs then
		}
		assert.Equal(t, want.Entrypoint, got.Entrypoint, "%+v", cfg)
		assert.Equal(t, want.Cmd, got.Cmd, "%+v", cfg)
		assert.Equal(t, want.WorkingDir, got.WorkingDir, "%+v", cfg)
		assert.Equal(t, want.Env, got.Env, "%+v", cfg)
		assert.Equal(t, len(want.Volumes), len(got.Volumes), "%+v", cfg)
		for v := range want.Volumes {
			assert.Contains(t, got.Volumes, v)
		}
	}

	// A script or rc.local a user changed before enroot export runs as Enroot runs it.
	files := enrootFiles(v1.Config{Cmd: []string{"app"}})
	files["etc/rc.local"] += "export MODE=tuned\n"
	got := enrootConfig(files)
	assert.Equal(t, []string{"/bin/sh", "/etc/rc"}, got.Entrypoint)
	assert.Empty(t, got.Cmd)
	files = enrootFiles(v1.Config{Cmd: []string{"app"}})
	files["etc/rc"] = "#!/bin/sh\nexec $(cat /cmd)\n"
	assert.Equal(t, []string{"/bin/sh", "/etc/rc"}, enrootConfig(files).Entrypoint)
}

// sqshOf writes a squashfs of dir with the given mksquashfs options.
func sqshOf(t *testing.T, dir, out string, opts ...string) string {
	t.Helper()
	args := append([]string{dir, out, "-noappend", "-no-progress"}, opts...)
	o, err := exec.Command("mksquashfs", args...).CombinedOutput()
	require.NoError(t, err, string(o))
	return out
}

// enrootImageTree writes the tree `enroot import` makes of cfg, plus files.
func enrootImageTree(t *testing.T, cfg v1.Config, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range enrootFiles(cfg) {
		files[name] = body
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o755))
	}
	return dir
}

func TestImportEnrootSquashfs(t *testing.T) {
	needSquashfsTools(t)
	root := storeRoot(t)
	s := openStore(t, root, nil)
	cfg := v1.Config{Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"}, WorkingDir: "/srv", Env: []string{"MODE=prod"},
		Volumes: map[string]struct{}{"/data": {}}}
	file := sqshOf(t, enrootImageTree(t, cfg, map[string]string{"bin/app": "#!/bin/sh\n"}), filepath.Join(t.TempDir(), "app.sqsh"), "-all-root")
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()

	img, err := s.Import(context.Background(), f, "site/app:1.0")
	require.NoError(t, err)
	assert.Equal(t, []string{"docker.io/site/app:1.0"}, img.RepoTags)
	assert.Equal(t, SourceImport, img.Source)
	assert.Equal(t, []string{"/bin/app"}, img.Entrypoint)
	assert.Equal(t, []string{"--serve"}, img.Cmd)
	assert.Equal(t, "/srv", img.WorkingDir)
	assert.Equal(t, []string{"MODE=prod"}, img.Env)
	assert.Equal(t, []string{"/data"}, img.Volumes)
	require.NotNil(t, img.AllRoot)
	assert.True(t, *img.AllRoot)
	assert.Equal(t, catFile(t, file, "etc/rc"), catFile(t, img.Squashfs, "etc/rc"), "the file is kept as it is")
	st, err := os.Stat(img.Squashfs)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())

	again, err := s.Import(context.Background(), f, "site/app:latest")
	require.NoError(t, err)
	assert.Equal(t, img.ID, again.ID, "the same file is the same image")
	assert.ElementsMatch(t, []string{"docker.io/site/app:1.0", "docker.io/site/app:latest"}, again.RepoTags)

	// Survives a restart.
	s2 := openStore(t, root, nil)
	got, err := s2.Get("site/app:1.0")
	require.NoError(t, err)
	assert.Equal(t, img.Entrypoint, got.Entrypoint)

	notSqsh := filepath.Join(t.TempDir(), "x.sqsh")
	require.NoError(t, os.WriteFile(notSqsh, []byte("not a squashfs at all"), 0o644))
	bad, err := os.Open(notSqsh)
	require.NoError(t, err)
	defer bad.Close()
	_, err = s.Import(context.Background(), bad, "site/bad:1")
	assert.ErrorIs(t, err, errdefs.ErrInvalidArgument)
	_, err = s.Import(context.Background(), f, "site/app@sha256:"+img.ID[7:])
	assert.ErrorIs(t, err, errdefs.ErrInvalidArgument)
	assert.Empty(t, dirEntries(t, filepath.Join(root, "tmp")), "a failed import leaves nothing")

	_, err = s.Pull(context.Background(), file, PullOptions{})
	assert.ErrorIs(t, err, errdefs.ErrInvalidArgument)
	assert.ErrorContains(t, err, "enroot-cri images import")
}

func TestSharedDirectory(t *testing.T) {
	needSquashfsTools(t)
	shared := t.TempDir()
	cfg := v1.Config{Cmd: []string{"python3", "train.py"}, WorkingDir: "/workspace", Env: []string{"PYTHONUNBUFFERED=1"}}
	tree := enrootImageTree(t, cfg, map[string]string{"workspace/train.py": "print(1)\n"})
	sqshOf(t, tree, filepath.Join(shared, "nvidia+pytorch+24.05.sqsh"), "-all-root")
	sqshOf(t, tree, filepath.Join(shared, "ubuntu.sqsh"), "-all-root")
	require.NoError(t, os.WriteFile(filepath.Join(shared, "README"), []byte("not an image"), 0o644))
	root := storeRoot(t)
	s, err := Open(Options{Root: root, SquashOptions: enroot.DefaultSquashOptions, MaxConcurrentDownloads: 1,
		Shared: map[string]string{"sqsh.site": shared}})
	require.NoError(t, err)
	before := treeFiles(t, root)

	img, err := s.Pull(context.Background(), "sqsh.site/nvidia/pytorch:24.05", PullOptions{})
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(shared, "nvidia+pytorch+24.05.sqsh"), img.Squashfs, "used in place")
	assert.Equal(t, SourceShared, img.Source)
	assert.Equal(t, []string{"python3", "train.py"}, img.Cmd)
	assert.Equal(t, "/workspace", img.WorkingDir)
	assert.Contains(t, img.RepoTags, "sqsh.site/nvidia/pytorch:24.05")

	ubuntu, err := s.Get("sqsh.site/ubuntu")
	require.NoError(t, err, "no tag is the file enroot import writes without one")
	assert.Equal(t, filepath.Join(shared, "ubuntu.sqsh"), ubuntu.Squashfs)
	byID, err := s.Get(img.ID)
	require.NoError(t, err)
	assert.Equal(t, img.Squashfs, byID.Squashfs)

	ids := map[string]bool{}
	for _, i := range s.List() {
		ids[i.ID] = true
	}
	assert.True(t, ids[img.ID] && ids[ubuntu.ID], "List shows the shared images")
	assert.Len(t, ids, 2)

	_, err = s.Get("sqsh.site/nvidia/pytorch:23.10")
	assert.ErrorIs(t, err, errdefs.ErrNotFound)
	for _, hostile := range []string{"sqsh.site/../etc/passwd", "sqsh.site/x@sha256:" + img.ID[7:]} {
		_, err = s.Pull(context.Background(), hostile, PullOptions{})
		assert.ErrorIs(t, err, errdefs.ErrInvalidArgument, hostile)
	}
	err = s.Remove("sqsh.site/ubuntu:latest")
	assert.ErrorIs(t, err, errdefs.ErrFailedPrecondition)
	assert.FileExists(t, filepath.Join(shared, "ubuntu.sqsh"))
	assert.Equal(t, before, treeFiles(t, root), "a shared image adds no file to the store")

	// Replacing the file makes another image.
	sqshOf(t, enrootImageTree(t, v1.Config{Cmd: []string{"true"}}, map[string]string{}), filepath.Join(shared, "ubuntu.sqsh"), "-all-root")
	newer, err := s.Get("sqsh.site/ubuntu:latest")
	require.NoError(t, err)
	assert.NotEqual(t, ubuntu.ID, newer.ID)
	assert.Equal(t, []string{"true"}, newer.Cmd)
}

// treeFiles lists every path under dir.
func treeFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		out = append(out, p)
		return err
	}))
	return out
}

// Jobs get the Enroot layout: all files root's, as from enroot import; the pod's file
// keeps the image's owners. An image whose files are root's already is one file.
func TestEnrootLayoutAndJobLinks(t *testing.T) {
	reg := startRegistry(t, testregistry.Options{})
	push(t, reg, "owners/app:1", v1.Config{Cmd: []string{"cat", "/secret"}}, true,
		[]E{{Name: "secret", Body: "s", Mode: 0o640, UID: 1234, GID: 5678}})
	push(t, reg, "rooted/app:1", v1.Config{}, true, []E{{Name: "f", Body: "x"}})
	root := storeRoot(t)
	s, err := Open(Options{Root: root, SquashOptions: enroot.DefaultSquashOptions, MaxConcurrentDownloads: 1, Jobs: filepath.Join(root, "jobs")})
	require.NoError(t, err)
	ctx := context.Background()

	owned := pull(t, s, reg.Host+"/owners/app:1")
	require.NotNil(t, owned.AllRoot)
	assert.False(t, *owned.AllRoot)
	layout, err := s.EnrootFile(ctx, owned.ID)
	require.NoError(t, err)
	assert.NotEqual(t, owned.Squashfs, layout)
	assert.Equal(t, "-rw-r----- 0/0", listing(t, layout)["secret"], "the job's file is root's")
	assert.Equal(t, "-rw-r----- 1234/5678", listing(t, owned.Squashfs)["secret"], "the pod's keeps its owner")
	again, err := s.EnrootFile(ctx, owned.ID)
	require.NoError(t, err)
	assert.Equal(t, layout, again, "made once")
	withLayout, err := s.Get(owned.ID)
	require.NoError(t, err)
	assert.Positive(t, withLayout.EnrootSize)
	assert.Equal(t, withLayout.Size+withLayout.EnrootSize, withLayout.DiskSize(), "counted with the image")

	rooted := pull(t, s, reg.Host+"/rooted/app:1")
	file, err := s.EnrootFile(ctx, rooted.ID)
	require.NoError(t, err)
	assert.Equal(t, rooted.Squashfs, file, "all root's already: the same file")

	// A job step's link: the same inode, in a directory of the user, 0500.
	js := JobStep{UID: 5001, GID: 5001, Job: "42", Step: "0"}
	path, err := s.HandToJob(ctx, rooted.ID, js)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(root, "jobs", "5001", "42.0.sqsh"), path)
	assert.Equal(t, ino(t, rooted.Squashfs), ino(t, path))
	st, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o500), st.Mode().Perm())
	assert.Equal(t, uint32(5001), st.Sys().(*syscall.Stat_t).Uid)
	_, err = s.HandToJob(ctx, owned.ID, JobStep{UID: 5001, GID: 5001, Job: "42", Step: "1"})
	require.NoError(t, err)

	err = s.Remove(rooted.ID)
	assert.ErrorIs(t, err, errdefs.ErrFailedPrecondition, "held by the job")
	assert.ErrorContains(t, err, "5001/42.0")
	assert.FileExists(t, rooted.Squashfs)

	// The holds survive a restart, found from the links.
	s2, err := Open(Options{Root: root, SquashOptions: enroot.DefaultSquashOptions, MaxConcurrentDownloads: 1, Jobs: filepath.Join(root, "jobs")})
	require.NoError(t, err)
	assert.Len(t, s2.JobHolds(), 2)
	assert.ErrorIs(t, s2.Remove(owned.ID), errdefs.ErrFailedPrecondition)

	n, err := s2.ReleaseJob(JobStep{UID: 5001, Job: "42", Step: "0"})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	n, err = s2.ReleaseJob(JobStep{UID: 5001, Job: "42", Step: "0"})
	require.NoError(t, err, "twice is fine")
	assert.Zero(t, n)
	require.NoError(t, s2.Remove(rooted.ID))
	assert.NoFileExists(t, rooted.Squashfs)
	n, err = s2.ReleaseJob(JobStep{UID: 5001, Job: "42"})
	require.NoError(t, err, "the epilog releases every step")
	assert.Equal(t, 1, n)
	require.NoError(t, s2.Remove(owned.ID))
	assert.NoFileExists(t, layout, "the Enroot layout goes with the image")
	assert.Empty(t, dirEntries(t, filepath.Join(root, "jobs", "5001")))

	for _, bad := range []JobStep{{Job: "../x", Step: "0"}, {Job: "1", Step: "a.b"}, {Job: "", Step: "0"}} {
		_, err := s2.HandToJob(ctx, owned.ID, bad)
		assert.ErrorIs(t, err, errdefs.ErrInvalidArgument, "%+v", bad)
	}
}

func ino(t *testing.T, path string) string {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return strconv.FormatUint(st.Sys().(*syscall.Stat_t).Ino, 10)
}
