package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// DefaultPath is where `enroot-cri serve` looks when --config is not given.
const DefaultPath = "/etc/enroot-cri/config.toml"

// Config is the whole configuration file.
type Config struct {
	Socket         string `toml:"socket"`
	Root           string `toml:"root"`
	State          string `toml:"state"`
	LogLevel       string `toml:"log_level"`
	LogFormat      string `toml:"log_format"`
	DefaultRuntime string `toml:"default_runtime"`

	Images     Images                  `toml:"images"`
	Registries map[string]RegistryHost `toml:"registries"`
	Enroot     Enroot                  `toml:"enroot"`
	CNI        CNI                     `toml:"cni"`
	Cgroups    Cgroups                 `toml:"cgroups"`
	Streaming  Streaming               `toml:"streaming"`
	Metrics    Metrics                 `toml:"metrics"`
	GPUs       GPUs                    `toml:"gpus"`
	Runtimes   map[string]Runtime      `toml:"runtimes"`
}

// Images configures the image store.
type Images struct {
	// SquashOptions are mksquashfs options; empty means ENROOT_SQUASH_OPTIONS from the
	// Enroot configuration, else Enroot's default.
	SquashOptions          string `toml:"squash_options"`
	MaxConcurrentDownloads int    `toml:"max_concurrent_downloads"`
}

// RegistryHost configures one registry host ("*" matches any host).
type RegistryHost struct {
	Mirrors  []string `toml:"mirrors"`
	Insecure bool     `toml:"insecure"`
}

// Enroot points at the node's Enroot configuration.
type Enroot struct {
	ConfigDir string `toml:"config_dir"`
}

// CNI configures pod networking.
type CNI struct {
	ConfDir string   `toml:"conf_dir"`
	BinDirs []string `toml:"bin_dirs"`
}

// Cgroups configures confinement.
type Cgroups struct {
	Driver          string `toml:"driver"`
	SlurmCgroupConf string `toml:"slurm_cgroup_conf"`
}

// Streaming configures the exec/attach/port-forward server.
type Streaming struct {
	Address string `toml:"address"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Address string `toml:"address"`
}

// GPUs configures the GPU inventory, the node ledger and bindings.
type GPUs struct {
	// NVMLHelper is the enroot-cri-nvml program that reads NVML; empty: the one next
	// to the enroot-cri executable.
	NVMLHelper string `toml:"nvml_helper"`
	// Ledger is the node's GPU and slice ledger, shared with Slurm's prolog and epilog;
	// empty: gpu-ledger.json under root.
	Ledger string `toml:"ledger"`
	// DevRoot and MigMinors are the host's /dev and mig-minors file.
	DevRoot   string `toml:"dev_root"`
	MigMinors string `toml:"mig_minors"`
	// CDISpecDirs are searched for CDI specs when the Enroot configuration has no
	// NVIDIA hook.
	CDISpecDirs []string `toml:"cdi_spec_dirs"`
	// DevicePlugin advertises the GPUs and MIG slices to the kubelet through its
	// device plugin API, from DevicePluginDir.
	DevicePlugin    bool   `toml:"device_plugin"`
	DevicePluginDir string `toml:"device_plugin_dir"`
	// PrologStrict makes a failing `enroot-cri slurm prolog` fail the job (exit 1);
	// otherwise it logs and lets the job run.
	PrologStrict bool `toml:"prolog_strict"`
}

// LedgerPath is where the GPU ledger lives.
func (c Config) LedgerPath() string {
	if c.GPUs.Ledger != "" {
		return c.GPUs.Ledger
	}
	return filepath.Join(c.Root, "gpu-ledger.json")
}

// Runtime is one RuntimeClass handler.
type Runtime struct {
	// AllowPrivileged lets pods of this handler run privileged containers.
	AllowPrivileged bool `toml:"allow_privileged"`
	// DefaultSeccomp is the seccomp profile of containers that ask for none:
	// "unconfined" (the CRI default) or "runtime/default".
	DefaultSeccomp string `toml:"default_seccomp"`
	// EnrootConfigDir overrides [enroot] config_dir for this handler's pods.
	EnrootConfigDir string `toml:"enroot_config_dir"`
	// DisableHooks skips the Enroot hooks.d scripts for this handler's pods.
	DisableHooks bool `toml:"disable_hooks"`
	// RemapRoot applies Enroot's remapped root (enroot start --root) to this handler's
	// pods that ask for no user namespace of their own: a user namespace mapping only
	// the container's root, to RemapRootUID:RemapRootGID on the host, with Enroot's
	// seccomp filter that makes chown and set*id succeed without effect.
	RemapRoot    bool   `toml:"remap_root"`
	RemapRootUID uint32 `toml:"remap_root_uid"`
	RemapRootGID uint32 `toml:"remap_root_gid"`
}

// EnrootDir is the Enroot configuration directory of handler.
func (c Config) EnrootDir(handler string) string {
	if d := c.Runtimes[handler].EnrootConfigDir; d != "" {
		return d
	}
	return c.Enroot.ConfigDir
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Socket:         "/run/enroot-cri/enroot-cri.sock",
		Root:           "/var/lib/enroot-cri",
		State:          "/run/enroot-cri",
		LogLevel:       "info",
		LogFormat:      "text",
		DefaultRuntime: "enroot",
		Images:         Images{MaxConcurrentDownloads: 10},
		Registries:     map[string]RegistryHost{},
		Enroot:         Enroot{ConfigDir: "/etc/enroot"},
		CNI:            CNI{ConfDir: "/etc/cni/net.d", BinDirs: []string{"/opt/cni/bin", "/usr/lib/cni"}},
		Cgroups:        Cgroups{Driver: "cgroupfs", SlurmCgroupConf: "/etc/slurm/cgroup.conf"},
		Streaming:      Streaming{Address: "127.0.0.1:0"},
		Metrics:        Metrics{Address: ""},
		GPUs: GPUs{DevRoot: "/dev", MigMinors: "/proc/driver/nvidia-caps/mig-minors",
			CDISpecDirs: []string{"/etc/cdi", "/var/run/cdi"}, DevicePluginDir: "/var/lib/kubelet/device-plugins"},
		Runtimes: map[string]Runtime{"enroot": {DefaultSeccomp: "unconfined", RemapRootUID: 65534, RemapRootGID: 65534}},
	}
}

// Load reads the file at path over the defaults. When explicit is false (the path is
// the default one) a missing file means the built-in defaults.
func Load(path string, explicit bool) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return Default(), nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("read configuration: %w", err)
	}
	return Parse(string(data), path)
}

// Parse decodes TOML text over the defaults and validates it; file names the source
// in error messages.
func Parse(text, file string) (Config, error) {
	cfg := Default()
	meta, err := toml.Decode(text, &cfg)
	if err != nil {
		return Config{}, errdefs.WithKind(fmt.Errorf("%s: %w", file, err), errdefs.ErrInvalidArgument)
	}
	if undecoded := meta.Undecoded(); len(undecoded) > 0 {
		keys := make([]string, len(undecoded))
		for i, k := range undecoded {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("%s: unknown configuration key %q (see `enroot-cri config` for the valid keys): %w",
			file, keys[0], errdefs.ErrInvalidArgument)
	}
	if cfg.Registries == nil {
		cfg.Registries = map[string]RegistryHost{}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", file, err)
	}
	return cfg, nil
}

// Validate checks every value; the error names the key and what is allowed.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w", key, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument))
	}
	for key, p := range map[string]string{
		"socket": c.Socket, "root": c.Root, "state": c.State,
		"enroot.config_dir": c.Enroot.ConfigDir, "cni.conf_dir": c.CNI.ConfDir,
		"cgroups.slurm_cgroup_conf": c.Cgroups.SlurmCgroupConf,
		"gpus.dev_root":             c.GPUs.DevRoot, "gpus.mig_minors": c.GPUs.MigMinors,
		"gpus.device_plugin_dir": c.GPUs.DevicePluginDir,
	} {
		if !filepath.IsAbs(p) {
			bad(key, "%q must be an absolute path", p)
		}
	}
	for key, p := range map[string]string{"gpus.nvml_helper": c.GPUs.NVMLHelper, "gpus.ledger": c.GPUs.Ledger} {
		if p != "" && !filepath.IsAbs(p) {
			bad(key, "%q must be empty or an absolute path", p)
		}
	}
	for i, d := range c.GPUs.CDISpecDirs {
		if !filepath.IsAbs(d) {
			bad(fmt.Sprintf("gpus.cdi_spec_dirs[%d]", i), "%q must be an absolute path", d)
		}
	}
	for i, d := range c.CNI.BinDirs {
		if !filepath.IsAbs(d) {
			bad(fmt.Sprintf("cni.bin_dirs[%d]", i), "%q must be an absolute path", d)
		}
	}
	oneOf(bad, "log_level", c.LogLevel, "debug", "info", "warn", "error")
	oneOf(bad, "log_format", c.LogFormat, "text", "json")
	oneOf(bad, "cgroups.driver", c.Cgroups.Driver, "cgroupfs", "systemd")
	if _, ok := c.Runtimes[c.DefaultRuntime]; !ok {
		bad("default_runtime", "%q names no [runtimes.<handler>] table; configured handlers: %s",
			c.DefaultRuntime, strings.Join(c.RuntimeHandlers(), ", "))
	}
	for name, r := range c.Runtimes {
		if r.RemapRoot && (r.RemapRootUID == 0 || r.RemapRootGID == 0) {
			bad(fmt.Sprintf("runtimes.%s.remap_root_uid", name), "remap_root needs unprivileged host IDs, not 0 (uid %d, gid %d)", r.RemapRootUID, r.RemapRootGID)
		}
		if d := r.EnrootConfigDir; d != "" && !filepath.IsAbs(d) {
			bad(fmt.Sprintf("runtimes.%s.enroot_config_dir", name), "%q must be an absolute path", d)
		}
		if r.DefaultSeccomp != "" {
			oneOf(bad, fmt.Sprintf("runtimes.%s.default_seccomp", name), r.DefaultSeccomp, "unconfined", "runtime/default")
		}
	}
	if n := c.Images.MaxConcurrentDownloads; n < 1 || n > 1000 {
		bad("images.max_concurrent_downloads", "%d is out of range; allowed: 1 to 1000", n)
	}
	for host, r := range c.Registries {
		for i, m := range r.Mirrors {
			if err := checkMirror(m); err != nil {
				bad(fmt.Sprintf("registries.%q.mirrors[%d]", host, i), "%v", err)
			}
		}
	}
	if err := checkAddress(c.Streaming.Address, false, true); err != nil {
		bad("streaming.address", "%v", err)
	}
	if err := checkAddress(c.Metrics.Address, true, false); err != nil {
		bad("metrics.address", "%v", err)
	}
	return errors.Join(errs...)
}

// RuntimeHandlers lists the configured handler names, sorted.
func (c Config) RuntimeHandlers() []string {
	names := make([]string, 0, len(c.Runtimes))
	for name := range c.Runtimes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func oneOf(bad func(string, string, ...any), key, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	bad(key, "%q is not allowed; allowed: %s", value, strings.Join(allowed, " | "))
}

func checkMirror(m string) error {
	u, err := url.Parse(m)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", m, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q must be http://HOST[:PORT] or https://HOST[:PORT]", m)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q must have no path, query or credentials", m)
	}
	return nil
}

func checkAddress(addr string, emptyOK, loopbackOnly bool) error {
	if addr == "" && emptyOK {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q must be HOST:PORT: %w", addr, err)
	}
	if ip := net.ParseIP(host); loopbackOnly && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q must be on loopback (127.0.0.0/8, ::1 or localhost)", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q has a bad port: %w", addr, err)
	}
	return nil
}

// NVMLHelperPath is the enroot-cri-nvml program: gpus.nvml_helper, else the one next
// to the running executable.
func (c Config) NVMLHelperPath() string {
	if c.GPUs.NVMLHelper != "" {
		return c.GPUs.NVMLHelper
	}
	exe, err := os.Executable()
	if err != nil {
		return "/usr/bin/enroot-cri-nvml"
	}
	return filepath.Join(filepath.Dir(exe), "enroot-cri-nvml")
}
