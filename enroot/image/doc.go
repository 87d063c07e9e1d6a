// Package image is the squashfs image store: it pulls OCI and Docker images from
// registries (mirrors, credentials, manifest lists), caches their layers by digest,
// applies them safely to a staging tree, adds the files `enroot import` generates, and
// writes ONE squashfs file per image.
//
// Invariants: an image is visible only once its squashfs file and its record are both
// in place (the record, written atomically, is the commit point); nothing a layer holds
// is written outside the staging tree; a build runs once per image ID however many
// pulls ask for it; recovery (Open) removes whatever an interrupted pull left.
//
// It imports the enroot leaf's own packages, errdefs and internal/ only.
package image
