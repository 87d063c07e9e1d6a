package version

import (
	"regexp"
	"strings"
)

// Version is the release of this build; "dev" for an unreleased tree.
var Version = "dev"

// CRIAPIVersion is the CRI API version the daemon serves.
const CRIAPIVersion = "v1"

// RuntimeName is the name the daemon reports in the CRI Version call.
const RuntimeName = "enroot-cri"

// base is the release the tree is on the way to; Semantic prefixes untagged builds
// with it.
const base = "0.1.0"

// Semantic is Version as a semantic version, which the kubelet parses
// (containerRuntimeVersion): a release tag (v1.2.3 → 1.2.3) as it is, anything else
// (a commit hash, "dev") as a pre-release of base: 0.1.0-4a2d6ed.
func Semantic() string {
	v := strings.TrimPrefix(Version, "v")
	if semver.MatchString(v) {
		return v
	}
	return base + "-" + strings.Trim(notIdent.ReplaceAllString(Version, "-"), "-")
}

var (
	semver   = regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	notIdent = regexp.MustCompile(`[^0-9A-Za-z.-]+`)
)
