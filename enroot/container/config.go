package container

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/enroot-cri/enroot-cri/internal/atomicfile"
)

// configVersion is the version of the bundle configuration format written today.
const configVersion = 1

// Config is everything the shim and the container's init need, written to the
// container's bundle directory before the shim starts.
type Config struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Spec: Process (args, env, cwd, user, terminal, oom score), Root.Path (the image's
	// read-only tree), Mounts (in order), Hostname, Linux.Namespaces (a Path means join
	// that namespace; pid without a Path means a new one; mount is always new) and
	// Linux.Devices.
	Spec specs.Spec `json:"spec"`
	// UpperDir and WorkDir hold the container's writable overlay layer.
	UpperDir string `json:"upper_dir"`
	WorkDir  string `json:"work_dir"`
	// SharedRoot keeps the container's view of the host's mounts shared rather than
	// slave, so that a bidirectional mount propagates back to the host.
	SharedRoot bool `json:"shared_root,omitempty"`
	// Volumes are directories created in the root (the image's volumes).
	Volumes []string `json:"volumes,omitempty"`
	// LogPath receives stdout and stderr in the CRI log format; empty discards them.
	LogPath string `json:"log_path"`
	// Enroot, when set, applies the node's Enroot configuration and hooks.
	Enroot *EnrootConfig `json:"enroot,omitempty"`
	// DeviceSources are the host nodes of devices whose container path differs; a
	// container in a user namespace gets its devices bound from the host.
	DeviceSources map[string]string `json:"device_sources,omitempty"`
	// RemapRoot installs Enroot's remapped-root seccomp filter (chown and set*id
	// succeed without effect).
	RemapRoot bool `json:"remap_root,omitempty"`
	// MountFds are, in a user namespace, the init's descriptors of bind mount sources
	// by index in Spec.Mounts (the shim opens them).
	MountFds  map[int]int `json:"mount_fds,omitempty"`
	Stdin     bool        `json:"stdin"`
	StdinOnce bool        `json:"stdin_once"`
}

func writeConfig(bundle string, cfg *Config) error {
	cfg.Version = configVersion
	return atomicfile.WriteJSON(filepath.Join(bundle, "config.json"), cfg)
}

func readConfig(bundle string) (*Config, error) {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read container configuration: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("decode container configuration: %w", err)
	}
	if cfg.Version != configVersion {
		return nil, fmt.Errorf("container configuration version %d; this binary reads %d", cfg.Version, configVersion)
	}
	return &cfg, nil
}

// namespacePath returns the path of the namespace of type t to join, whether the
// spec lists the type, and whether it asks for a new one (listed without a path).
func namespacePath(spec *specs.Spec, t specs.LinuxNamespaceType) (path string, listed bool) {
	if spec.Linux == nil {
		return "", false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return ns.Path, true
		}
	}
	return "", false
}
