package image

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Image references come from pod specs, layers from image authors: no input may make
// the parsers panic, and no layer may write outside its tree.

func FuzzParseReference(f *testing.F) {
	for _, seed := range []string{"busybox", "registry.k8s.io/pause:3.10", "127.0.0.1:5000/a/b@sha256:" +
		"0123456789012345678901234567890123456789012345678901234567890123", "UPPER/Case", "a/../b", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if r, err := parseReference(ref, false); err == nil {
			_ = displayName(r)
			_ = repoName(r)
		}
	})
}

// tarBytes writes entries as a tar stream for seeds.
func tarBytes(f *testing.F, hdrs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			f.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(make([]byte, h.Size)); err != nil {
				f.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

func FuzzApplyLayer(f *testing.F) {
	f.Add(tarBytes(f, &tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Size: 4, Mode: 0o644}))
	f.Add(tarBytes(f, &tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "../../outside"},
		&tar.Header{Name: "evil/x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}))
	f.Add(tarBytes(f, &tar.Header{Name: "a/.wh..wh..opq", Typeflag: tar.TypeReg},
		&tar.Header{Name: ".wh.b", Typeflag: tar.TypeReg},
		&tar.Header{Name: "l", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}))
	f.Fuzz(func(t *testing.T, layer []byte) {
		dir, err := os.MkdirTemp("", "fuzz-layer-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		root, outside := filepath.Join(dir, "root"), filepath.Join(dir, "outside")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		tr, err := openTree(root)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		tr.budget = newBudget(Limits{MaxBytes: 1 << 20, MaxEntries: 1000}, root)
		_ = tr.applyLayer(bytes.NewReader(layer))
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("the layer wrote beside its tree: %v", entries)
		}
		if _, err := os.Lstat(outside); err == nil {
			t.Fatal("the layer wrote outside its tree")
		}
	})
}
