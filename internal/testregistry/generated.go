package testregistry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// GeneratedLayers makes nLayers gzip layers of sizeMiB in all, of 1 MiB files, half
// random bytes and half text, the same every time; it returns the layers and their
// compressed blobs.
func GeneratedLayers(sizeMiB, nLayers int) ([]v1.Layer, [][]byte, error) {
	perLayer := sizeMiB / nLayers
	rng := rand.New(rand.NewPCG(1, 2))
	var layers []v1.Layer
	var blobs [][]byte
	chunk := make([]byte, 1<<20)
	for l := range nLayers {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		diff := sha256.New()
		tw := tar.NewWriter(io.MultiWriter(zw, diff))
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("layer%d/", l), Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return nil, nil, err
		}
		for f := range perLayer {
			if f%2 == 0 {
				for i := 0; i < len(chunk); i += 8 {
					v := rng.Uint64()
					for j := range 8 {
						chunk[i+j] = byte(v >> (8 * j))
					}
				}
			} else {
				for i := range chunk {
					chunk[i] = "enroot-cri pulls layers into squashfs\n"[i%38]
				}
			}
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("layer%d/file%03d", l, f), Mode: 0o644, Size: int64(len(chunk)), Typeflag: tar.TypeReg}); err != nil {
				return nil, nil, err
			}
			if _, err := tw.Write(chunk); err != nil {
				return nil, nil, err
			}
		}
		if err := tw.Close(); err != nil {
			return nil, nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, nil, err
		}
		blobs = append(blobs, buf.Bytes())
		layers = append(layers, &layer{compressed: buf.Bytes(), diffID: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diff.Sum(nil))},
			mediaType: types.OCILayer})
	}
	return layers, blobs, nil
}
