package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// ownedImage is busybox with a file of another owner, 0640, as many images have
// (a service account's configuration).
func ownedImage(t *testing.T) v1.Image {
	t.Helper()
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	entries = append(entries, testregistry.Entry{Name: "owned", Body: "owned by 1234\n", Mode: 0o640, UID: 1234, GID: 5678})
	l, err := testregistry.Layer(entries, testregistry.Gzip, false)
	require.NoError(t, err)
	img, err := testregistry.Image(v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}, false, l)
	require.NoError(t, err)
	return img
}

// pyxisNode is a Slurm node (slurmctld and slurmd on 127.0.0.1) with pyxis and Enroot
// built from their sources, next to a daemon.
type pyxisNode struct {
	cluster                                *slurmCluster
	path                                   string // the jobs' PATH, with Enroot's
	pyxis, runtimeDir, plugstack, importer string
	inodes                                 string // "<uid> <inode>" of each path the importer handed out
}

func newPyxisNode(t *testing.T, e *podEnv) *pyxisNode {
	t.Helper()
	if os.Getenv("ENROOT_CRI_SLURM_PARITY") == "" && os.Getenv("ENROOT_CRI_BENCH_SRUN") == "" {
		t.Skip("run by make test-slurm-parity and make bench-pull (they install slurmd, slurmctld and munge)")
	}
	needCgroupV1(t)
	needTools(t, "munged", "slurmctld", "slurmd", "srun", "setpriv")
	inst := buildEnroot(t)
	n := &pyxisNode{pyxis: buildPyxis(t)}
	share := siteDir(t)
	n.inodes = filepath.Join(share, "inodes")
	// The packaged wrapper (packaging/pyxis-importer.sh) with this daemon's
	// configuration file, which also notes the inode of each path it hands out.
	n.importer = filepath.Join(share, "importer")
	require.NoError(t, os.WriteFile(n.importer, []byte(fmt.Sprintf(`#!/bin/sh
out=$(%s pyxis-importer --config %s "$@") || exit $?
[ -z "$out" ] || { echo "$out"; stat -c "$(id -u) %%i" "$out" >> %s; }
`, enrootCRI, e.config, n.inodes)), 0o755))
	require.NoError(t, os.WriteFile(n.inodes, nil, 0o666))
	require.NoError(t, os.Chmod(n.inodes, 0o666))
	n.runtimeDir = filepath.Join(share, "pyxis")
	require.NoError(t, os.MkdirAll(n.runtimeDir, 0o755))
	n.plugstack = filepath.Join(share, "plugstack.conf")
	writeFiles(t, inst.ConfigDir(), map[string]string{"enroot.conf.d/50-parity.conf": "ENROOT_RUNTIME_PATH ${HOME}/.enroot-runtime\n"})
	n.cluster = startSlurm(t, "PlugStackConfig="+n.plugstack+"\n", "")
	n.path = inst.Bin() + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	n.cluster.env = []string{"PATH=" + n.path}
	return n
}

// configure writes pyxis's plugstack line with options and restarts slurmd.
func (n *pyxisNode) configure(t *testing.T, options string) {
	t.Helper()
	line := fmt.Sprintf("required %s runtime_path=%s %s\n", n.pyxis, n.runtimeDir, options)
	require.NoError(t, os.WriteFile(n.plugstack, []byte(line), 0o644))
	n.cluster.restart(t, "CgroupPlugin=cgroup/v1\n")
}

// srun runs `srun --container-image=uri sh -c script` as uid and returns its output
// and wall time.
func (n *pyxisNode) srun(t *testing.T, uid int, home, uri, script string) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--init-groups",
		"srun", "-N1", "-n1", "--container-image="+uri, "sh", "-c", script)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + n.path, "HOME=" + home, "SLURM_CONF=" + n.cluster.conf}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	require.NoError(t, err, "srun --container-image=%s: %s\n%s", uri, out, n.cluster.logs())
	return string(out), took
}

// TestPyxisImporter runs `srun --container-image=docker://…` under a real slurmd with
// pyxis (importer= our importer) and Enroot built from their sources, as a user and as
// root, on a node whose daemon already holds the image for its pods: the jobs run from
// the store (no second download, the same inode as the image's Enroot layout), root
// reads every file as it would from enroot import, and the holds end with the jobs.
func TestPyxisImporter(t *testing.T) {
	if os.Getenv("ENROOT_CRI_SLURM_PARITY") == "" {
		t.Skip("run by make test-slurm-parity (it installs slurmd, slurmctld and munge)")
	}
	hostUser(t, "ecri-test", testUID)
	e := newPodEnvWith(t, shareWithJobs)
	openToOthers(t, e.dir)
	node := newPyxisNode(t, e)
	node.configure(t, "importer="+node.importer)
	img := ownedImage(t)
	_, err := e.reg.Push("test/owned:1", img)
	require.NoError(t, err)
	ref := e.reg.Host + "/test/owned:1"
	_, err = e.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	require.NoError(t, err, "the node's pods pulled it")
	downloads := blobGets(t, e.reg, img)

	uri := "docker://" + e.reg.Host + "#test/owned:1"
	const script = "echo id=$(id -u); cat /owned 2>&1; ls /bin/busybox"
	userOut, _ := node.srun(t, testUID, "/home/ecri-test", uri, script)
	assert.Contains(t, userOut, "id=5001")
	assert.Contains(t, userOut, "/bin/busybox")
	assert.Contains(t, userOut, "owned by 1234", "enroot create unpacks the file as the job's user, as it unpacks enroot import's")
	rootOut, _ := node.srun(t, 0, "/root", uri, script)
	assert.Contains(t, rootOut, "id=0")
	assert.Contains(t, rootOut, "owned by 1234", "root reads every file, as from enroot import (all root's)")

	assert.Equal(t, downloads, blobGets(t, e.reg, img), "the jobs ran the store's image: nothing was downloaded again")
	rec := e.imageRecord(t, ref)
	require.NotEmpty(t, rec.EnrootSquashfs, "the image has files of another owner: its Enroot layout was made")
	data, err := os.ReadFile(node.inodes)
	require.NoError(t, err)
	want := strconv.FormatUint(inodeOf(t, rec.EnrootSquashfs), 10)
	assert.Equal(t, fmt.Sprintf("%d %s\n0 %s\n", testUID, want, want), string(data), "both jobs read the store's file")
	holds, code := runCLI(t, "images", "holds", "--config", e.config)
	require.Equal(t, 0, code, holds)
	assert.Len(t, lines(holds), 1, "pyxis released both jobs' holds:\n%s", holds)
	entries, _ := os.ReadDir(filepath.Join(e.dir, "root", "jobs", strconv.Itoa(testUID)))
	assert.Empty(t, entries)
}
