package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// shareWithJobs is the one option these tests turn on: a site whose Slurm jobs should
// run the store's images through pyxis (plugstack.conf importer=) sets it.
const shareWithJobs = "[images]\nshare_with_jobs = true\n"

// imageRecord is what ImageStatus's verbose info says of an image.
type imageRecord struct {
	ID             string `json:"id"`
	Squashfs       string `json:"squashfs"`
	EnrootSquashfs string `json:"enroot_squashfs"`
	Source         string `json:"source"`
}

func (d *daemon) imageRecord(t *testing.T, ref string) imageRecord {
	t.Helper()
	resp, err := d.images.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: true})
	require.NoError(t, err)
	require.NotNil(t, resp.Image, "no image %s", ref)
	var rec imageRecord
	require.NoError(t, jsonUnmarshal(resp.Info["info"], &rec))
	return rec
}

// openToOthers makes the test's directory traversable (0711), as /var/lib and /run
// are, so that a job's user can reach the image socket and the job links.
func openToOthers(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		require.NoError(t, os.Chmod(d, 0o711))
	}
}

// asUser runs argv as uid (its own groups) with env, and returns the output and exit
// status.
func asUser(t *testing.T, uid int, env []string, argv ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	args := []string{"--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(uid), "--clear-groups"}
	if uid != 0 && uid != 65534 {
		args[2] = "--init-groups"
	}
	cmd := exec.CommandContext(ctx, "setpriv", append(args, argv...)...)
	cmd.Dir = "/"
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return string(out), code
}

// importer runs `enroot-cri pyxis-importer` as pyxis runs it: as the job's user, with
// the job's environment.
func (d *daemon) importer(t *testing.T, uid int, home, job, step string, args ...string) (string, int) {
	t.Helper()
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + home, "SLURM_JOB_ID=" + job, "SLURM_STEP_ID=" + step,
		"SLURM_JOB_UID=" + strconv.Itoa(uid)}
	return asUser(t, uid, env, append([]string{enrootCRI, "pyxis-importer", "--config", d.config}, args...)...)
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return st.Sys().(*syscall.Stat_t).Ino
}

func blobGets(t *testing.T, reg *testregistry.Registry, img v1.Image) int {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	n := 0
	for _, l := range layers {
		d, err := l.Digest()
		require.NoError(t, err)
		n += reg.BlobGets(d.String())
	}
	return n
}

// The pyxis importer, as pyxis runs it, hands a job step the store's image: no second
// download, the same inode as the pod's, a path only the job's user can open, held
// against removal until release; a job of root reads every file as from enroot
// import; and an image pulled with credentials is handed only to users whose own
// credentials reach it.
func TestImporterHandsJobsTheStoresImages(t *testing.T) {
	needTools(t, "setpriv")
	hostUser(t, "ecri-test", testUID)
	e := newPodEnvWith(t, shareWithJobs)
	openToOthers(t, e.dir)
	uri := "docker://" + e.reg.Host + "#test/busybox:1"
	busybox := e.imageRecord(t, e.image)
	img := pushedBusybox(t)
	before := blobGets(t, e.reg, img)

	out, code := e.importer(t, testUID, "/home/ecri-test", "101", "0", "get", uri)
	require.Equal(t, 0, code, out)
	path := lines(out)[len(lines(out))-1]
	assert.Equal(t, filepath.Join(e.dir, "root", "jobs", strconv.Itoa(testUID), "101.0.sqsh"), path)
	assert.Equal(t, before, blobGets(t, e.reg, img), "the job's image is the pod's: nothing is downloaded again")
	assert.Equal(t, inodeOf(t, busybox.Squashfs), inodeOf(t, path), "the job and the pod read the same inode")
	got, code := asUser(t, testUID, nil, "head", "-c", "4", path)
	assert.Equal(t, 0, code, got)
	assert.Equal(t, "hsqs", got, "the job's user opens it")
	got, code = asUser(t, 65534, nil, "head", "-c", "4", path)
	assert.NotEqual(t, 0, code, "another user cannot: %s", got)
	assert.Contains(t, got, "Permission denied")
	got, code = asUser(t, 65534, nil, "head", "-c", "4", busybox.Squashfs)
	assert.NotEqual(t, 0, code, "nor the store's own file: %s", got)

	// Held until released: crictl rmi (what the kubelet's image GC calls) is refused.
	_, err := e.images.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: busybox.ID}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in use by Slurm job step 5001/101.0")
	holds, code := runCLI(t, "images", "holds", "--config", e.config)
	require.Equal(t, 0, code, holds)
	assert.Contains(t, holds, "5001  101  0     "+busybox.ID)
	for range 2 { // pyxis releases twice
		out, code = e.importer(t, testUID, "/home/ecri-test", "101", "0", "release")
		require.Equal(t, 0, code, out)
	}
	assert.NoFileExists(t, path)

	// A root job of an image whose files are not all root's gets Enroot's layout.
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	entries = append(entries, testregistry.Entry{Name: "owned", Body: "secret\n", Mode: 0o640, UID: 1234, GID: 5678})
	l, err := testregistry.Layer(entries, testregistry.Gzip, false)
	require.NoError(t, err)
	owned, err := testregistry.Image(v1.Config{Cmd: []string{"/bin/sh"}}, false, l)
	require.NoError(t, err)
	_, err = e.reg.Push("test/owned:1", owned)
	require.NoError(t, err)
	fsBefore := imageFsBytes(t, e.daemon)
	out, code = e.importer(t, 0, "/root", "102", "0", "get", "docker://"+e.reg.Host+"#test/owned:1")
	require.Equal(t, 0, code, out)
	rootPath := lines(out)[len(lines(out))-1]
	rec := e.imageRecord(t, e.reg.Host+"/test/owned:1")
	require.NotEmpty(t, rec.EnrootSquashfs)
	assert.Equal(t, inodeOf(t, rec.EnrootSquashfs), inodeOf(t, rootPath))
	assert.Contains(t, squashfsListing(t, rootPath), "-rw-r----- 0/0", "every file is root's, as enroot import writes it")
	assert.Contains(t, squashfsListing(t, rec.Squashfs), "-rw-r----- 1234/5678", "the pod's image keeps its owners")
	assert.Greater(t, imageFsBytes(t, e.daemon), fsBefore, "ImageFsInfo counts the Enroot layout")
	out, code = e.importer(t, 0, "/root", "102", "0", "release")
	require.Equal(t, 0, code, out)
	_, err = e.images.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: rec.ID}})
	require.NoError(t, err)
	assert.NoFileExists(t, rec.EnrootSquashfs, "removed with the image")

	// Credentials: an image the node pulled with a login is handed only to users whose
	// own Enroot credentials (or anonymous access) reach its manifest.
	private := startRegistry(t, testregistry.Options{Auth: testregistry.TokenAuth, User: "alice", Password: "s3cret"})
	pushBusybox(t, private, "team/private:1")
	_, err = e.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: private.Host + "/team/private:1"},
		Auth: &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret"}})
	require.NoError(t, err)
	privImg := pushedBusybox(t)
	pulled := blobGets(t, private, privImg)
	privURI := "docker://" + private.Host + "#team/private:1"
	out, code = e.importer(t, testUID, "/home/ecri-test", "103", "0", "get", privURI)
	assert.NotEqual(t, 0, code, "no credentials: refused\n%s", out)
	assert.Contains(t, out, "401 Unauthorized")
	assert.Contains(t, out, "/home/ecri-test/.config/enroot/.credentials", "and says where credentials go")
	assert.NoFileExists(t, filepath.Join(e.dir, "root", "jobs", strconv.Itoa(testUID), "103.0.sqsh"))
	creds := "/home/ecri-test/.config/enroot/.credentials"
	t.Cleanup(func() { os.RemoveAll("/home/ecri-test/.config") })
	for _, d := range []string{"/home/ecri-test/.config", "/home/ecri-test/.config/enroot"} {
		require.NoError(t, os.MkdirAll(d, 0o700))
		require.NoError(t, os.Chown(d, testUID, testUID))
	}
	require.NoError(t, os.WriteFile(creds, []byte("machine 127.0.0.1 login alice password wrong\n"), 0o600))
	require.NoError(t, os.Chown(creds, testUID, testUID))
	out, code = e.importer(t, testUID, "/home/ecri-test", "103", "0", "get", privURI)
	assert.NotEqual(t, 0, code, "wrong credentials: refused\n%s", out)
	require.NoError(t, os.WriteFile(creds, []byte("machine 127.0.0.1 login alice password $ECRI_TEST_PASSWORD\n"), 0o600))
	out, code = asUser(t, testUID, []string{"PATH=/usr/bin:/bin", "HOME=/home/ecri-test", "SLURM_JOB_ID=103", "SLURM_STEP_ID=0",
		"ECRI_TEST_PASSWORD=s3cret"}, enrootCRI, "pyxis-importer", "--config", e.config, "get", privURI)
	require.Equal(t, 0, code, "the user's own credentials, a password from the environment as Enroot allows\n%s", out)
	assert.Contains(t, out, "Using credentials of alice")
	assert.Equal(t, pulled, blobGets(t, private, privImg), "and still nothing downloaded again")
	out, code = e.importer(t, testUID, "/home/ecri-test", "103", "0", "release")
	require.Equal(t, 0, code, out)

	// Bad requests name what is wrong.
	out, code = e.importer(t, testUID, "/home/ecri-test", "104", "0", "get", "dockerd://busybox")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "scheme dockerd:// is not served by enroot-cri")
	out, code = e.importer(t, testUID, "/home/ecri-test", "../x", "0", "get", uri)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, `the Slurm job ID "../x" is not valid`)
	out, code = asUser(t, testUID, []string{"PATH=/usr/bin:/bin"}, enrootCRI, "images", "import", "--config", e.config, busybox.Squashfs, "x:1")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "permission denied")
}

// Without share_with_jobs (the shipped default) the store serves root's jobs only.
func TestImporterServesOnlyRootByDefault(t *testing.T) {
	needTools(t, "setpriv")
	hostUser(t, "ecri-test", testUID)
	e := newPodEnv(t)
	openToOthers(t, e.dir)
	uri := "docker://" + e.reg.Host + "#test/busybox:1"
	out, code := e.importer(t, testUID, "/home/ecri-test", "201", "0", "get", uri)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "images.share_with_jobs is false")
	out, code = e.importer(t, 0, "/root", "201", "0", "get", uri)
	require.Equal(t, 0, code, out)
	out, code = e.importer(t, 0, "/root", "201", "0", "release")
	require.Equal(t, 0, code, out)
}

func pushedBusybox(t *testing.T) v1.Image {
	t.Helper()
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	l, err := testregistry.Layer(entries, testregistry.Gzip, false)
	require.NoError(t, err)
	img, err := testregistry.Image(v1.Config{Cmd: []string{"/bin/sh"}, User: "www-data", Env: []string{"PATH=/bin"}}, false, l)
	require.NoError(t, err)
	return img
}

func imageFsBytes(t *testing.T, d *daemon) uint64 {
	t.Helper()
	resp, err := d.images.ImageFsInfo(context.Background(), &runtimeapi.ImageFsInfoRequest{})
	require.NoError(t, err)
	return resp.ImageFilesystems[0].UsedBytes.Value
}

func squashfsListing(t *testing.T, sqsh string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-lln", sqsh).CombinedOutput()
	require.NoError(t, err, string(out))
	return string(out)
}

// enrootEnv is the environment of an Enroot user whose directories are under dir.
func enrootEnv(t *testing.T, inst enrootInstall, dir string) []string {
	t.Helper()
	env := []string{"PATH=" + inst.Bin() + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir, "ENROOT_ALLOW_HTTP=y"}
	for _, v := range []string{"RUNTIME", "CACHE", "DATA", "TEMP", "CONFIG"} {
		d := filepath.Join(dir, strings.ToLower(v))
		require.NoError(t, os.MkdirAll(d, 0o700))
		env = append(env, fmt.Sprintf("ENROOT_%s_PATH=%s", v, d))
	}
	return env
}

func runEnroot(t *testing.T, inst enrootInstall, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(inst.Bin(), "enroot"), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "enroot %v: %s", args, out)
	return string(out)
}

// appConfig is an image configuration with all that Enroot keeps of it.
var appConfig = v1.Config{
	Entrypoint: []string{"/bin/sh", "-c", `echo "entrypoint $0 $*"; echo "MODE=$MODE"; echo "cwd $(pwd)"; cat /etc/tuned 2>/dev/null; true`},
	Cmd:        []string{"from-cmd", "two words"},
	WorkingDir: "/work",
	Env:        []string{"PATH=/bin", "MODE=image"},
	Volumes:    map[string]struct{}{"/data": {}},
	Labels:     map[string]string{"org.opencontainers.image.title": "app", "maintainer": "site\nteam"},
}

// Squashfs files from `enroot import` and from `enroot export` of a customised
// container run as pods with the entrypoint, command, environment and working
// directory they have under Enroot; a site's shared directory of such files serves
// them without a copy.
func TestEnrootImagesRunAsPods(t *testing.T) {
	inst := buildEnroot(t)
	shared := siteDir(t)
	// A site serves its shared image directory under a registry name of its choice.
	e := newPodEnvWith(t, fmt.Sprintf("[images.shared]\n\"sqsh.site\" = %q\n", shared))
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	l, err := testregistry.Layer(entries, testregistry.Gzip, false)
	require.NoError(t, err)
	img, err := testregistry.Image(appConfig, false, l)
	require.NoError(t, err)
	_, err = e.reg.Push("site/app:v1", img)
	require.NoError(t, err)

	work := siteDir(t)
	env := enrootEnv(t, inst, work)
	imported := filepath.Join(shared, "site+app+v1.sqsh")
	runEnroot(t, inst, env, "import", "--output", imported, "docker://"+e.reg.Host+"#site/app:v1")
	// A container customised by hand (as a user would inside it) and saved.
	runEnroot(t, inst, env, "create", "--name", "tuned", imported)
	rootfs := filepath.Join(work, "data", "tuned")
	writeFiles(t, rootfs, map[string]string{"etc/tuned": "tuned by hand\n"})
	f, err := os.OpenFile(filepath.Join(rootfs, "etc", "rc.local"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("export MODE=tuned\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	exported := filepath.Join(work, "tuned.sqsh")
	runEnroot(t, inst, env, "export", "--output", exported, "tuned")

	// The files enroot-cri generates from the same image are enroot import's, byte for byte.
	_, err = e.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.reg.Host + "/site/app:v1"}})
	require.NoError(t, err)
	pulled := e.imageRecord(t, e.reg.Host+"/site/app:v1")
	for _, f := range []string{"etc/rc", "etc/rc.local", "etc/environment", "etc/fstab"} {
		assert.Equal(t, catSquashfs(t, imported, f), catSquashfs(t, pulled.Squashfs, f), "/%s", f)
	}

	for file, name := range map[string]string{imported: "site/app:imported", exported: "site/app:exported"} {
		out, code := runCLI(t, "images", "import", "--config", e.config, file, name)
		require.Equal(t, 0, code, out)
		assert.Contains(t, out, "docker.io/"+name)
	}
	listed := e.crictl(t, "images")
	assert.Contains(t, listed, "docker.io/site/app")
	assert.Contains(t, listed, "imported")
	assert.Contains(t, listed, "exported")
	assert.Contains(t, listed, "sqsh.site/site/app", "the shared directory's images are listed")

	rootBefore := storeFiles(t, filepath.Join(e.dir, "root"))
	cfg := e.podConfig("enroot-images", nil)
	pod := e.runPod(t, cfg)
	for _, tc := range []struct{ image, want string }{
		{"site/app:imported", "entrypoint from-cmd two words\nMODE=image\ncwd /work"},
		{"site/app:exported", "entrypoint from-cmd two words\nMODE=tuned\ncwd /work\ntuned by hand"},
		{"sqsh.site/site/app:v1", "entrypoint from-cmd two words\nMODE=image\ncwd /work"},
	} {
		// imagePullPolicy IfNotPresent: the kubelet asks ImageStatus, finds it, runs it.
		st, err := e.images.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: tc.image}})
		require.NoError(t, err)
		require.NotNil(t, st.Image, "%s is present without a pull", tc.image)
		id := e.create(t, pod, cfg, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: strings.NewReplacer("/", "-", ":", "-", ".", "-").Replace(tc.image)},
			Image:    &runtimeapi.ImageSpec{Image: tc.image}, LogPath: strings.ReplaceAll(tc.image, "/", "_") + ".log"})
		_, err = e.runtime.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
		require.NoError(t, err)
		exit := e.waitExited(t, id)
		out := strings.Join(lines(e.crictl(t, "logs", id)), "\n")
		assert.Equal(t, int32(0), exit.ExitCode, out)
		assert.Equal(t, tc.want, out, tc.image)
	}
	rec := e.imageRecord(t, "sqsh.site/site/app:v1")
	assert.Equal(t, imported, rec.Squashfs, "the shared file is mounted where it is")
	assert.Equal(t, rootBefore, storeFiles(t, filepath.Join(e.dir, "root")), "running a shared image adds no file to the store")
	_, err = e.images.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "sqsh.site/site/app:v1"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "never removes")
	assert.FileExists(t, imported)

	// A file path is not a registry image: the error says what to do instead.
	_, err = e.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: imported}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "enroot-cri images import")
}

func catSquashfs(t *testing.T, sqsh, path string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-cat", sqsh, path).Output()
	require.NoError(t, err, "unsquashfs -cat %s %s", sqsh, path)
	return string(out)
}

// storeFiles lists the image store's files (images, blobs, staging, job links).
func storeFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for _, d := range []string{"images", "blobs", "tmp", "jobs"} {
		_ = filepath.Walk(filepath.Join(root, d), func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}
