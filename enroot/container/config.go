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
const configVersion = 2

// Config is everything the shim and the container's init need. The daemon writes it
// to the container's bundle (root's, never the container's) before the shim starts; the
// shim hands the init its own copy through a descriptor. The daemon's copy decides
// every exec: nothing the container can write is read back.
type Config struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Spec: Process (args, env, cwd, user, terminal, oom score, security), Root.Path
	// (the image's read-only tree), Mounts (in order), Hostname, Linux.Namespaces (a
	// Path means join that namespace; pid without a Path means a new one; mount is
	// always new; cgroup without a Path means a new one made just before the command
	// runs) and Linux.Devices.
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
	// EnrootFilter installs Enroot's seccomp filter (chown and set*id succeed without
	// effect) before any hook runs, as enroot-nsenter does in a user namespace.
	EnrootFilter bool `json:"enroot_filter,omitempty"`
	// PresetGroups says the shim gives the init the supplementary groups
	// (Spec.Process.User.AdditionalGids) before it enters a user namespace that denies
	// setgroups, as a Slurm task keeps the user's groups.
	PresetGroups bool `json:"preset_groups,omitempty"`
	// CgroupProcs are the cgroup.procs files the shim puts the init in before the init
	// sets anything up; CgroupView is what it shows at /sys/fs/cgroup.
	CgroupProcs []string    `json:"cgroup_procs,omitempty"`
	CgroupView  []CgroupDir `json:"cgroup_view,omitempty"`
	Stdin       bool        `json:"stdin"`
	StdinOnce   bool        `json:"stdin_once"`

	// Set by the shim in the init's copy only.
	// Rootfs is where a container without a user namespace mounts its root.
	Rootfs string `json:"rootfs,omitempty"`
	// MountFds are, in a user namespace, the init's descriptors of bind mount sources
	// by index in Spec.Mounts, and ViewFds those of CgroupView (the shim opens them).
	MountFds map[int]int `json:"mount_fds,omitempty"`
	ViewFds  map[int]int `json:"view_fds,omitempty"`
}

// CgroupDir is one directory of a container's /sys/fs/cgroup: Name under it (empty:
// /sys/fs/cgroup itself), the host directory it shows, or a symlink to a sibling; with
// neither, an empty directory.
type CgroupDir struct {
	Name   string `json:"name"`
	Source string `json:"source,omitempty"`
	Link   string `json:"link,omitempty"`
}

func writeConfig(bundle string, cfg *Config) error {
	cfg.Version = configVersion
	return atomicfile.WriteJSON(filepath.Join(bundle, bundleConfigFile), cfg)
}

func readConfig(bundle string) (*Config, error) {
	data, err := os.ReadFile(filepath.Join(bundle, bundleConfigFile))
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

// namespacePath returns the path of the namespace of type t to join and whether the
// spec lists the type at all (listed without a path: a new one).
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
