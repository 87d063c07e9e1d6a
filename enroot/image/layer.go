package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// openBlob returns the tar stream inside a layer blob file, which may be gzip, zstd or
// uncompressed; the format is recognised by its magic bytes, as registries do not
// always label it. An uncompressed blob's stream is the file itself (the caller keeps
// it open), so that a tar reader seeks over content it does not need.
func openBlob(f *os.File) (r io.ReadCloser, compressed bool, err error) {
	magic := make([]byte, 4)
	n, err := f.ReadAt(magic, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, fmt.Errorf("read layer: %w", err)
	}
	magic = magic[:n]
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bufio.NewReaderSize(f, 64<<10))
		if err != nil {
			return nil, false, fmt.Errorf("open gzip layer: %w", err)
		}
		return zr, true, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bufio.NewReaderSize(f, 64<<10))
		if err != nil {
			return nil, false, fmt.Errorf("open zstd layer: %w", err)
		}
		return zr.IOReadCloser(), true, nil
	default:
		return f, false, nil
	}
}

// cleanName turns a tar entry name into a path relative to the tree. A leading "/" is
// dropped (as GNU tar does); a name that climbs out of the tree with ".." is refused.
func cleanName(name string) (string, error) {
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("path %q climbs out of the image with \"..\"", name)
	}
	if rel == "." {
		return "", nil
	}
	return rel, nil
}
