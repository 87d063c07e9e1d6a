package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// TestBenchSrunContainerImage is make bench-pull's Slurm half: `srun
// --container-image=docker://…` of a generated image (1 GiB unless
// ENROOT_CRI_BENCH_MIB says otherwise) as a user, on a node whose daemon already holds
// it, through our importer, against pyxis's own import of it (enroot import) in the
// same invocation. It prints the times and the bytes each run downloaded; it asserts
// only that the runs work.
func TestBenchSrunContainerImage(t *testing.T) {
	if os.Getenv("ENROOT_CRI_BENCH_SRUN") == "" {
		t.Skip("run by make bench-pull")
	}
	sizeMiB := 1024
	if v := os.Getenv("ENROOT_CRI_BENCH_MIB"); v != "" {
		var err error
		sizeMiB, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	hostUser(t, "ecri-test", testUID)
	e := newPodEnvWith(t, shareWithJobs)
	openToOthers(t, e.dir)
	node := newPyxisNode(t, e)

	layers, blobs, err := testregistry.GeneratedLayers(sizeMiB, 10)
	require.NoError(t, err)
	entries, err := testregistry.BusyboxEntries()
	require.NoError(t, err)
	bb, err := testregistry.Layer(entries, testregistry.Gzip, true)
	require.NoError(t, err)
	img, err := testregistry.Image(v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}, true, append(layers, bb)...)
	require.NoError(t, err)
	_, err = e.reg.Push("bench/big:1", img)
	require.NoError(t, err)
	var compressed int64
	for _, b := range blobs {
		compressed += int64(len(b))
	}
	downloaded := func() int64 {
		var n int64
		for i, l := range layers {
			d, _ := l.Digest()
			n += int64(e.reg.BlobGets(d.String())) * int64(len(blobs[i]))
		}
		return n
	}

	start := time.Now()
	_, err = e.images.PullImage(context.Background(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.reg.Host + "/bench/big:1"}})
	require.NoError(t, err)
	nodePull := time.Since(start)
	uri := "docker://" + e.reg.Host + "#bench/big:1"
	type row struct {
		name       string
		took       time.Duration
		downloaded int64
	}
	var rows []row
	configured := "-"
	measure := func(name, options string) {
		if options != configured {
			node.configure(t, options)
			configured = options
		}
		before := downloaded()
		_, took := node.srun(t, testUID, "/home/ecri-test", uri, "true")
		rows = append(rows, row{name, took, downloaded() - before})
	}
	measure("enroot-cri importer, first job", "importer="+node.importer)
	measure("enroot-cri importer, next job", "importer="+node.importer)
	// pyxis's use_squashfuse starts the job from the file itself, when users may open
	// /dev/fuse (it is 0600 on some machines, such as this project's test VM).
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 == 0o006 {
		measure("enroot-cri importer, use_squashfuse=1", "importer="+node.importer+" use_squashfuse=1")
	} else {
		fmt.Println("not measured: pyxis's use_squashfuse=1 (users cannot open /dev/fuse here)")
	}
	// enroot import reaches the registry on 127.0.0.1 over plain HTTP only when allowed.
	allowHTTP := filepath.Join(buildEnroot(t).ConfigDir(), "enroot.conf.d", "60-bench-http.conf")
	require.NoError(t, os.WriteFile(allowHTTP, []byte("ENROOT_ALLOW_HTTP y\n"), 0o644))
	t.Cleanup(func() { os.Remove(allowHTTP) })
	// Enroot keeps the layers it downloaded in the user's cache (ENROOT_CACHE_PATH).
	cache := "/home/ecri-test/.cache/enroot"
	require.NoError(t, os.RemoveAll(cache))
	t.Cleanup(func() { os.RemoveAll(cache) })
	measure("pyxis's own import, user's cache empty", "")
	measure("pyxis's own import, layers in user's cache", "")

	fmt.Printf("\nsrun --container-image of a %d MiB image (%.0f MB compressed, 10 layers + busybox) as uid %d\n",
		sizeMiB, float64(compressed)/1e6, testUID)
	fmt.Printf("(the node's own pull for its pods, before: %.1fs)\n", nodePull.Seconds())
	fmt.Printf("%-42s %10s %16s\n", "", "srun", "downloaded")
	for _, r := range rows {
		fmt.Printf("%-42s %9.1fs %13.0f MB\n", r.name, r.took.Seconds(), float64(r.downloaded)/1e6)
	}
	fmt.Println("\nThe importer hands the job the store's squashfs (a link); pyxis then runs enroot create")
	fmt.Println("(unpacks it) or, with use_squashfuse=1, starts from the file. Pyxis's own import downloads")
	fmt.Println("the layers once per user (Enroot's cache), and converts and squashes them for every job.")
}
