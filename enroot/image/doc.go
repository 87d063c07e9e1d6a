// Package image is the squashfs image store: it pulls OCI and Docker images from
// registries (mirrors, credentials, manifest lists), caches their layers by digest,
// merges their headers safely into an in-memory tree with the files `enroot import`
// generates, and streams what survives into ONE squashfs file per image (merge.go,
// stream.go): nothing is unpacked.
//
// Invariants: an image is visible only once its squashfs file and its record are both
// in place (the record, written atomically, is the commit point); every name a layer
// holds resolves inside the image; a build runs once per image ID however many
// pulls ask for it; recovery (Open) removes whatever an interrupted pull left.
//
// It imports the enroot leaf's own packages, errdefs and internal/ only.
package image
