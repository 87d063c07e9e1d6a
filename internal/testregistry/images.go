package testregistry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// Entry is one tar entry of a test layer.
type Entry struct {
	Name     string
	Body     string
	Type     byte // tar.TypeReg when zero
	Mode     int64
	Linkname string
	UID, GID int
	Xattrs   map[string]string // extended attributes ("user.x": value)
}

// Compression of a test layer.
type Compression string

// The compressions a test layer can have.
const (
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
	Uncompressed Compression = "none"
)

// EntryTime is the modification time of every test entry, in Unix seconds.
const EntryTime = 1700000000

// Tar writes entries as an uncompressed tar stream.
func Tar(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Linkname,
			Uid: e.UID, Gid: e.GID, ModTime: time.Unix(EntryTime, 0), Format: tar.FormatPAX}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir || hdr.Typeflag == tar.TypeLink {
				// A hard link's header carries its target's mode (some runtimes apply it).
				hdr.Mode = 0o755
			}
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		for k, v := range e.Xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", e.Name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				return nil, err
			}
		}
	}
	// Close first: it writes the end-of-archive blocks GNU tar (Enroot's import) needs.
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layer builds a layer of entries with the given compression and media type family
// (oci true: OCI media types; false: Docker schema 2).
func Layer(entries []Entry, c Compression, oci bool) (v1.Layer, error) {
	raw, err := Tar(entries)
	if err != nil {
		return nil, err
	}
	return LayerFromTar(raw, c, oci)
}

// LayerFromTar compresses a tar stream into a layer.
func LayerFromTar(raw []byte, c Compression, oci bool) (v1.Layer, error) {
	var buf bytes.Buffer
	mt := types.DockerLayer
	switch c {
	case Gzip, "":
		zw := gzip.NewWriter(&buf)
		zw.Write(raw)
		zw.Close()
		if oci {
			mt = types.OCILayer
		}
	case Zstd:
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			return nil, err
		}
		zw.Write(raw)
		zw.Close()
		mt = types.OCILayerZStd
	case Uncompressed:
		buf.Write(raw)
		mt = types.OCIUncompressedLayer
		if !oci {
			mt = types.DockerUncompressedLayer
		}
	}
	return &layer{compressed: buf.Bytes(), diffID: sha256Hash(raw), mediaType: mt}, nil
}

// layer is a test layer held in memory, with the right digest and diff ID (a runtime
// that checks diff IDs against the image config, as containerd does, accepts it).
type layer struct {
	compressed []byte
	diffID     v1.Hash
	mediaType  types.MediaType
}

func (l *layer) Digest() (v1.Hash, error) { return sha256Hash(l.compressed), nil }
func (l *layer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *layer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l *layer) Uncompressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("test layers only serve their compressed form")
}
func (l *layer) Size() (int64, error)                { return int64(len(l.compressed)), nil }
func (l *layer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// Image builds an image of layers with cfg, for linux on this machine's architecture.
func Image(cfg v1.Config, oci bool, layers ...v1.Layer) (v1.Image, error) {
	base := empty.Image
	if oci {
		base = mutate.MediaType(base, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	}
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", goarch
	return mutate.ConfigFile(img, cf)
}

var libPath = regexp.MustCompile(`(/\S+\.so[.\d]*)`)

// DefaultPasswd and DefaultGroup are the test images' /etc/passwd and /etc/group.
const (
	DefaultPasswd = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
	DefaultGroup = "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n"
)

// BusyboxEntries returns the tar entries of a small root filesystem made from the
// host's dynamic busybox: the binary and its libraries, applets as hard links in /bin,
// and /etc/passwd and /etc/group with the usual users.
func BusyboxEntries() ([]Entry, error) {
	return RootfsEntries(nil, DefaultPasswd, DefaultGroup)
}

// RootfsEntries is BusyboxEntries with more host binaries (copied to the same path,
// with their libraries) and the given passwd and group files.
func RootfsEntries(binaries []string, passwd, group string) ([]Entry, error) {
	bin, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox is not installed (apt-get install busybox): %w", err)
	}
	bin, _ = filepath.EvalSymlinks(bin)
	entries := []Entry{{Name: "bin/", Type: tar.TypeDir}, {Name: "etc/", Type: tar.TypeDir},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777}, {Name: "root/", Type: tar.TypeDir, Mode: 0o700}}
	seen := map[string]bool{"/bin": true, "/etc": true, "/tmp": true}
	for _, b := range append([]string{bin}, binaries...) {
		more, err := binaryEntries(b, seen)
		if err != nil {
			return nil, err
		}
		entries = append(entries, more...)
	}
	if bin != "/bin/busybox" {
		entries = append(entries, Entry{Name: "bin/busybox", Type: tar.TypeLink, Linkname: bin[1:]})
	}
	list, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			entries = append(entries, Entry{Name: "bin/" + applet, Type: tar.TypeLink, Linkname: "bin/busybox"})
		}
	}
	return append(entries, Entry{Name: "etc/passwd", Body: passwd}, Entry{Name: "etc/group", Body: group}), nil
}

// binaryEntries returns a host binary and the libraries ldd lists for it.
func binaryEntries(path string, seen map[string]bool) ([]Entry, error) {
	ldd, err := exec.Command("ldd", path).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	var entries []Entry
	for _, file := range append(libPath.FindAllString(string(ldd), -1), path) {
		if seen[file] {
			continue
		}
		resolved, err := filepath.EvalSymlinks(file)
		if err != nil {
			continue
		}
		seen[file] = true
		body, err := os.ReadFile(resolved)
		if err != nil {
			return nil, err
		}
		entries = append(entries, dirsOf(file, seen)...)
		entries = append(entries, Entry{Name: file[1:], Body: string(body), Mode: 0o755})
	}
	return entries, nil
}

// dirsOf returns directory entries for the parents of an absolute path not yet seen.
func dirsOf(p string, seen map[string]bool) []Entry {
	var out []Entry
	for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
		if !seen[d] {
			seen[d] = true
			out = append([]Entry{{Name: d[1:] + "/", Type: tar.TypeDir}}, out...)
		}
	}
	return out
}

// CompressedLayer is a gzip layer from its compressed bytes and the digest of its
// uncompressed tar (for layers too large to hold uncompressed, such as a gzip bomb).
func CompressedLayer(gz []byte, diffID string) (v1.Layer, error) {
	h, err := v1.NewHash(diffID)
	if err != nil {
		return nil, err
	}
	return &layer{compressed: gz, diffID: h, mediaType: types.DockerLayer}, nil
}
