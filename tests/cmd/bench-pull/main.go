// Command bench-pull measures a pull of a generated image of about 1 GiB in 10 layers
// from a registry on 127.0.0.1, and prints, beside it, a reference run of what
// `enroot import` does with the same blobs in the same invocation: a plain HTTP
// download of the layers, GNU tar extraction, and mksquashfs with the same options.
//
//	go run ./tests/cmd/bench-pull [-size-mib 1024] [-layers 10]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/enroot/image"
	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

func main() {
	sizeMiB := flag.Int("size-mib", 1024, "total uncompressed size of the image")
	nLayers := flag.Int("layers", 10, "number of layers")
	flag.Parse()
	if err := run(*sizeMiB, *nLayers); err != nil {
		fmt.Fprintf(os.Stderr, "bench-pull: %v\n", err)
		os.Exit(1)
	}
}

func run(sizeMiB, nLayers int) error {
	work, err := os.MkdirTemp("", "bench-pull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	fmt.Printf("generating %d MiB in %d layers (half random, half text; gzip)...\n", sizeMiB, nLayers)
	layers, blobs, err := testregistry.GeneratedLayers(sizeMiB, nLayers)
	if err != nil {
		return err
	}
	reg, err := testregistry.Start(testregistry.Options{})
	if err != nil {
		return err
	}
	defer reg.Close()
	img, err := testregistry.Image(v1.Config{Cmd: []string{"/bin/sh"}}, true, layers...)
	if err != nil {
		return err
	}
	if _, err := reg.Push("bench/big:1", img); err != nil {
		return err
	}
	var compressed int64
	for _, b := range blobs {
		compressed += int64(len(b))
	}

	ours, err := pullWithStore(filepath.Join(work, "store"), reg.Host+"/bench/big:1")
	if err != nil {
		return err
	}
	ref, err := referenceImport(filepath.Join(work, "ref"), reg.Host, layers)
	if err != nil {
		return err
	}
	report(compressed, ours, ref)
	return nil
}

type timing struct {
	download, unpack, squash, total time.Duration
	treeBytes                       int64
	peakDisk                        int64 // the most the pull's directory held
}

func pullWithStore(root, ref string) (timing, error) {
	s, err := image.Open(image.Options{Root: root, SquashOptions: enroot.DefaultSquashOptions, MaxConcurrentDownloads: 10})
	if err != nil {
		return timing{}, err
	}
	var st image.Stats
	stop := watchDisk(root)
	start := time.Now()
	_, err = s.Pull(context.Background(), ref, image.PullOptions{OnBuilt: func(s image.Stats) { st = s }})
	t := timing{download: st.Download, unpack: st.Index, squash: st.Squash, total: time.Since(start), treeBytes: st.Bytes}
	t.peakDisk = stop()
	return t, err
}

// watchDisk samples the disk space used under dir every 20 ms until the returned
// func is called, which returns the largest sample.
func watchDisk(dir string) (stop func() int64) {
	var peak int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, diskUsage(dir))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		return max(peak, diskUsage(dir))
	}
}

// diskUsage is the space the files under dir take on disk (their allocated blocks).
func diskUsage(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil //nolint:nilerr // files come and go while a pull runs
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// referenceImport does what enroot import does: download every blob (10 at a time),
// extract each with GNU tar into one tree, mksquashfs it.
func referenceImport(dir, host string, layers []v1.Layer) (t timing, err error) {
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		return t, err
	}
	stop := watchDisk(dir)
	defer func() { t.peakDisk = stop() }()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(layers))
	for i, l := range layers {
		wg.Go(func() {
			d, _ := l.Digest()
			resp, err := http.Get(fmt.Sprintf("http://%s/v2/bench/big/blobs/%s", host, d))
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("layer%d.tgz", i)))
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			_, errs[i] = io.Copy(f, resp.Body)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return t, err
		}
	}
	t.download = time.Since(start)
	unpackStart := time.Now()
	for i := range layers {
		cmd := exec.Command("tar", "-C", filepath.Join(dir, "rootfs"), "-xzpf", filepath.Join(dir, fmt.Sprintf("layer%d.tgz", i)))
		if out, err := cmd.CombinedOutput(); err != nil {
			return t, fmt.Errorf("tar: %w: %s", err, out)
		}
	}
	t.unpack = time.Since(unpackStart)
	squashStart := time.Now()
	args := []string{filepath.Join(dir, "rootfs"), filepath.Join(dir, "ref.sqsh"), "-noappend", "-no-progress", "-all-root", "-comp", "lzo", "-noD", "-exit-on-error"}
	if out, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		return t, fmt.Errorf("mksquashfs: %w: %s", err, out)
	}
	t.squash = time.Since(squashStart)
	t.total = time.Since(start)
	return t, nil
}

func report(compressed int64, ours, ref timing) {
	mbps := func(n int64, d time.Duration) string { return fmt.Sprintf("%7.1f MB/s", float64(n)/1e6/d.Seconds()) }
	fmt.Printf("\nimage: %.0f MB compressed, %.0f MB unpacked\n", float64(compressed)/1e6, float64(ours.treeBytes)/1e6)
	fmt.Printf("%-28s %10s %14s   %10s %14s\n", "", "enroot-cri", "", "reference", "")
	row := func(name string, a, b time.Duration, n int64) {
		fmt.Printf("%-28s %9.2fs %s   %9.2fs %s\n", name, a.Seconds(), mbps(n, a), b.Seconds(), mbps(n, b))
	}
	row("download (compressed bytes)", ours.download, ref.download, compressed)
	row("index / unpack (image bytes)", ours.unpack, ref.unpack, ours.treeBytes)
	row("squashfs build (image bytes)", ours.squash, ref.squash, ours.treeBytes)
	row("total pull", ours.total, ref.total, ours.treeBytes)
	fmt.Printf("%-28s %9.0f MB %14s   %9.0f MB\n", "peak disk during the pull", float64(ours.peakDisk)/1e6, "", float64(ref.peakDisk)/1e6)
	fmt.Println("\nreference: plain HTTP download of the same blobs (10 at a time), GNU tar -xzpf per layer into")
	fmt.Println("a tree, mksquashfs of the tree with the same options, sequentially, as enroot import does.")
	fmt.Println("enroot-cri reads each layer's headers while later ones download (index), then streams the")
	fmt.Println("layers' surviving entries straight into mksquashfs: no tree, each byte written once.")
}
