package image

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"
)

// metadataVersion is the version of the image record format written today.
const metadataVersion = 1

// Image is one image of the store: a squashfs file and what the CRI reports about it.
type Image struct {
	Version     int               `json:"version"`
	ID          string            `json:"id"` // "sha256:<config digest>"
	RepoTags    []string          `json:"repo_tags"`
	RepoDigests []string          `json:"repo_digests"`
	Size        int64             `json:"size"` // bytes of the squashfs file
	User        string            `json:"user,omitempty"`
	Env         []string          `json:"env,omitempty"`
	Entrypoint  []string          `json:"entrypoint,omitempty"`
	Cmd         []string          `json:"cmd,omitempty"`
	WorkingDir  string            `json:"working_dir,omitempty"`
	Volumes     []string          `json:"volumes,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	StopSignal  string            `json:"stop_signal,omitempty"`
	// Layers are the compressed layer digests, for the blob cache.
	Layers  []string  `json:"layers"`
	Created time.Time `json:"created"` // when this store made the image
	// Squashfs is the image file's absolute path.
	Squashfs string `json:"squashfs"`
	// Source is where the image came from: SourceRegistry, SourceImport or
	// SourceShared.
	Source string `json:"source,omitempty"`
	// AllRoot says every file of the image belongs to root:root (nil: not known yet).
	AllRoot *bool `json:"all_root,omitempty"`
	// EnrootSquashfs is the image in Enroot's layout (all files root's), made for Slurm
	// jobs when the image's own file is not; EnrootSize its bytes.
	EnrootSquashfs string `json:"enroot_squashfs,omitempty"`
	EnrootSize     int64  `json:"enroot_size,omitempty"`
}

// Where an image came from.
const (
	SourceRegistry = ""       // pulled from a registry
	SourceImport   = "import" // a squashfs file `enroot-cri images import` copied in
	SourceShared   = "shared" // a file of a shared image directory, used in place
)

// DiskSize is the size the CRI reports: the bytes of the image's squashfs and of its
// Enroot-layout copy, what removing it frees (for a shared image, the size of its file,
// which stays).
func (img *Image) DiskSize() int64 {
	return img.Size + img.EnrootSize
}

func (img *Image) clone() *Image {
	c := *img
	c.RepoTags = slices.Clone(img.RepoTags)
	c.RepoDigests = slices.Clone(img.RepoDigests)
	return &c
}

func readImage(path string) (*Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read image record: %w", err)
	}
	var img Image
	if err := json.Unmarshal(data, &img); err != nil {
		return nil, fmt.Errorf("decode image record %s: %w", path, err)
	}
	if img.Version != metadataVersion {
		return nil, fmt.Errorf("image record %s has version %d; this enroot-cri reads version %d",
			path, img.Version, metadataVersion)
	}
	return &img, nil
}

// addName appends s to list unless it is there already.
func addName(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// withoutName returns list without s, leaving list itself unchanged.
func withoutName(list []string, s string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(x string) bool { return x == s })
}
