package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

// pushBenchImages serves the images make bench compares runtimes on: bench/pull:1,
// ~1 GiB in 10 gzip layers of half random, half text data; bench/small:1 (~10 MiB)
// and bench/big:1 (~2 GiB), uncompressed random data over the busybox base. slow, when
// set, is a second registry, its link paced to 1 Gbit/s: it serves bench/pull:2, an
// image like bench/pull:1 that shares no layer with it.
func pushBenchImages(reg, slow *testregistry.Registry, base []testregistry.Entry) error {
	if slow != nil {
		if err := pushDataImage(slow, base, "bench/pull:2", 1024, 10, testregistry.Gzip, 8); err != nil {
			return err
		}
	}
	for _, b := range []struct {
		name   string
		mib    int
		layers int
		c      testregistry.Compression
	}{
		{"bench/pull:1", 1024, 10, testregistry.Gzip},
		{"bench/small:1", 10, 1, testregistry.Uncompressed},
		{"bench/big:1", 2048, 16, testregistry.Uncompressed},
	} {
		if err := pushDataImage(reg, base, b.name, b.mib, b.layers, b.c, 7); err != nil {
			return err
		}
	}
	return nil
}

// pushDataImage pushes name: the busybox base and mib MiB of generated data in n
// layers (seed picks the data, so that images of different seeds share no layer).
func pushDataImage(reg *testregistry.Registry, base []testregistry.Entry, name string, mib, n int, c testregistry.Compression, seed uint64) error {
	layers, err := dataLayers(mib, n, c, seed)
	if err != nil {
		return err
	}
	baseLayer, err := testregistry.Layer(base, testregistry.Gzip, true)
	if err != nil {
		return err
	}
	img, err := testregistry.Image(v1.Config{Cmd: []string{"/bin/sleep", "2147483647"},
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}}, true, append([]v1.Layer{baseLayer}, layers...)...)
	if err != nil {
		return err
	}
	if _, err := reg.Push(name, img); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	return nil
}

// dataLayers makes n layers of 1 MiB files, mib MiB in all; every other file is text
// when the layers are compressed, so that they compress like real ones.
func dataLayers(mib, n int, c testregistry.Compression, seed uint64) ([]v1.Layer, error) {
	rng := rand.New(rand.NewPCG(uint64(mib), seed))
	chunk := make([]byte, 1<<20)
	var out []v1.Layer
	per := (mib + n - 1) / n
	for l := 0; l < n; l++ {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for f := 0; f < per && l*per+f < mib; f++ {
			if c == testregistry.Gzip && f%2 == 1 {
				for i := range chunk {
					chunk[i] = "enroot-cri benchmark data\n"[i%26]
				}
			} else {
				for i := 0; i < len(chunk); i += 8 {
					v := rng.Uint64()
					for j := range 8 {
						chunk[i+j] = byte(v >> (8 * j))
					}
				}
			}
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/%d/%d", l, f), Mode: 0o644,
				Size: int64(len(chunk)), Typeflag: tar.TypeReg}); err != nil {
				return nil, err
			}
			if _, err := tw.Write(chunk); err != nil {
				return nil, err
			}
		}
		if err := tw.Close(); err != nil {
			return nil, err
		}
		layer, err := testregistry.LayerFromTar(buf.Bytes(), c, true)
		if err != nil {
			return nil, err
		}
		out = append(out, layer)
	}
	return out, nil
}
