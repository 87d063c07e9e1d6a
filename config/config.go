package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-containerregistry/pkg/name"

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
	// Bounds on one pull, against hostile images: uncompressed bytes of all layers,
	// entries of all layers, and wall time; and the free space the store's
	// filesystem keeps while a pull writes.
	MaxImageBytes int64    `toml:"max_image_bytes"`
	MaxEntries    int64    `toml:"max_entries"`
	PullTimeout   Duration `toml:"pull_timeout"`
	MinFreeBytes  int64    `toml:"min_free_bytes"`
	// Socket is the image socket that `enroot-cri images import` and the pyxis
	// importer use; empty: images.sock in the state directory.
	Socket string `toml:"socket"`
	// ShareWithJobs lets Slurm jobs of every user run the store's images through the
	// pyxis importer; root's jobs may always.
	ShareWithJobs bool `toml:"share_with_jobs"`
	// Shared maps registry names to directories of Enroot images served under them.
	Shared map[string]string `toml:"shared"`
}

// ImageSocket is the image socket's path.
func (c Config) ImageSocket() string {
	if c.Images.Socket != "" {
		return c.Images.Socket
	}
	return filepath.Join(c.State, "images.sock")
}

// RegistryHost configures one registry host ("*" matches any host).
type RegistryHost struct {
	Mirrors  []string `toml:"mirrors"`
	Insecure bool     `toml:"insecure"`
}

// Enroot points at the node's Enroot configuration and installation.
type Enroot struct {
	ConfigDir string `toml:"config_dir"`
	// LibraryPath is Enroot's library directory (common.sh and friends, which the stock
	// hooks source), exported to hooks as ENROOT_LIBRARY_PATH; empty: the first of
	// Enroot's install locations that exists.
	LibraryPath string `toml:"library_path"`
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
	// PidsLimit is the most processes and threads one container may have (pids.max);
	// 0 means no limit of the runtime's own (CRI-O's pids_limit).
	PidsLimit int64 `toml:"pids_limit"`
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
	// AcceptEnvRequests lets NVIDIA_VISIBLE_DEVICES in a container's environment ask
	// for GPUs (the NVIDIA device plugin's envvar strategy). A pod author can set that
	// variable too, so it is off: GPUs then come only from CDI devices and the
	// runtime's allocation annotations.
	AcceptEnvRequests bool `toml:"accept_env_requests"`
}

// LedgerPath is where the GPU ledger lives.
func (c Config) LedgerPath() string {
	if c.GPUs.Ledger != "" {
		return c.GPUs.Ledger
	}
	return filepath.Join(c.Root, "gpu-ledger.json")
}

// Handler kinds: what a pod of a RuntimeClass handler runs as.
const (
	// KindKubernetes runs containers as containerd and runc do: no Enroot
	// configuration, privileged containers allowed where the handler allows them.
	KindKubernetes = "kubernetes"
	// KindEnroot runs containers as `enroot start` runs them under pyxis: a user
	// namespace, Enroot's seccomp filter and capabilities, the node's Enroot
	// configuration and hooks.
	KindEnroot = "enroot"
)

// Runtime is one RuntimeClass handler.
type Runtime struct {
	// Kind is KindKubernetes or KindEnroot. A table without it is of kind enroot when
	// it is named "enroot", else of kind kubernetes.
	Kind string `toml:"kind"`
	// AllowPrivileged lets pods of this handler run privileged containers (kind
	// kubernetes only).
	AllowPrivileged bool `toml:"allow_privileged"`
	// DefaultSeccomp is the seccomp profile of containers that ask for none:
	// "unconfined" (the CRI default) or "runtime/default".
	DefaultSeccomp string `toml:"default_seccomp"`
	// EnrootConfigDir overrides [enroot] config_dir for this handler's pods.
	EnrootConfigDir string `toml:"enroot_config_dir"`
	// DisableHooks skips the Enroot hooks.d scripts for this handler's pods.
	DisableHooks bool `toml:"disable_hooks"`
	// RemapRoot (kind enroot) is Enroot's remapped root (ENROOT_REMAP_ROOT, enroot
	// start --root): the container runs as root inside its user namespace, mapped to
	// the pod's user on the host.
	RemapRoot bool `toml:"remap_root"`
	// RemapRootUID and RemapRootGID (kind enroot) are the host IDs of a container that
	// runs as root: a pod of an Enroot handler is never host root.
	RemapRootUID uint32 `toml:"remap_root_uid"`
	RemapRootGID uint32 `toml:"remap_root_gid"`
	// MinUID (kind enroot) is the lowest host user ID a container may run as, other
	// than root (remapped): a pod acts as that user on the node, so system accounts
	// (munge, slurm, daemon) are refused.
	MinUID uint32 `toml:"min_uid"`
}

// IsEnroot reports whether the handler has Enroot semantics.
func (r Runtime) IsEnroot() bool { return r.Kind == KindEnroot }

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
		DefaultRuntime: KindKubernetes,
		Images: Images{MaxConcurrentDownloads: 10, MaxImageBytes: 256 << 30, MaxEntries: 10_000_000,
			PullTimeout: Duration{2 * time.Hour}, MinFreeBytes: 1 << 30, Shared: map[string]string{}},
		Registries: map[string]RegistryHost{},
		Enroot:     Enroot{ConfigDir: "/etc/enroot"},
		CNI:        CNI{ConfDir: "/etc/cni/net.d", BinDirs: []string{"/opt/cni/bin", "/usr/lib/cni"}},
		Cgroups:    Cgroups{Driver: "cgroupfs", SlurmCgroupConf: "/etc/slurm/cgroup.conf", PidsLimit: 32768},
		Streaming:  Streaming{Address: "127.0.0.1:0"},
		Metrics:    Metrics{Address: ""},
		GPUs: GPUs{DevRoot: "/dev", MigMinors: "/proc/driver/nvidia-caps/mig-minors",
			CDISpecDirs: []string{"/etc/cdi", "/var/run/cdi"}, DevicePluginDir: "/var/lib/kubelet/device-plugins"},
		Runtimes: map[string]Runtime{KindKubernetes: RuntimeDefaults(KindKubernetes), KindEnroot: RuntimeDefaults(KindEnroot)},
	}
}

// RuntimeDefaults is a [runtimes.<handler>] table of kind with every key at its
// default.
func RuntimeDefaults(kind string) Runtime {
	if kind == KindEnroot {
		return Runtime{Kind: KindEnroot, DefaultSeccomp: "unconfined", RemapRootUID: 65534, RemapRootGID: 65534, MinUID: 1000}
	}
	return Runtime{Kind: kind, AllowPrivileged: true, DefaultSeccomp: "unconfined"}
}

// fillRuntimeDefaults gives the keys a [runtimes.<handler>] table leaves out their
// defaults for the table's kind (a decoded table starts from zero values).
func fillRuntimeDefaults(cfg *Config, meta toml.MetaData) {
	for name, r := range cfg.Runtimes {
		if !meta.IsDefined("runtimes", name) {
			continue // built in
		}
		if !meta.IsDefined("runtimes", name, "kind") {
			r.Kind = KindKubernetes
			if name == KindEnroot {
				r.Kind = KindEnroot
			}
		}
		def := RuntimeDefaults(r.Kind)
		set := func(key string, apply func()) {
			if !meta.IsDefined("runtimes", name, key) {
				apply()
			}
		}
		set("allow_privileged", func() { r.AllowPrivileged = def.AllowPrivileged })
		set("default_seccomp", func() { r.DefaultSeccomp = def.DefaultSeccomp })
		set("remap_root_uid", func() { r.RemapRootUID = def.RemapRootUID })
		set("remap_root_gid", func() { r.RemapRootGID = def.RemapRootGID })
		set("min_uid", func() { r.MinUID = def.MinUID })
		cfg.Runtimes[name] = r
	}
}

// Duration is a time.Duration written as a Go duration string ("90s", "2h").
type Duration struct{ time.Duration }

// UnmarshalText reads a duration string.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"90s\" or \"2h\"", text)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

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
	fillRuntimeDefaults(&cfg, meta)
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
		key := func(k string) string { return fmt.Sprintf("runtimes.%s.%s", name, k) }
		oneOf(bad, key("kind"), r.Kind, KindKubernetes, KindEnroot)
		if r.IsEnroot() {
			if r.RemapRootUID == 0 || r.RemapRootGID == 0 {
				bad(key("remap_root_uid"), "a container's root must map to unprivileged host IDs, not 0 (uid %d, gid %d)", r.RemapRootUID, r.RemapRootGID)
			}
			if r.AllowPrivileged {
				bad(key("allow_privileged"), "handlers of kind enroot never run privileged containers; use a handler of kind kubernetes")
			}
		} else {
			for k, set := range map[string]bool{"remap_root": r.RemapRoot, "enroot_config_dir": r.EnrootConfigDir != "", "disable_hooks": r.DisableHooks} {
				if set {
					bad(key(k), "applies to handlers of kind enroot only (this one is of kind %s)", r.Kind)
				}
			}
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
	for k, v := range map[string]int64{"images.max_image_bytes": c.Images.MaxImageBytes, "images.max_entries": c.Images.MaxEntries,
		"images.min_free_bytes": c.Images.MinFreeBytes, "cgroups.pids_limit": c.Cgroups.PidsLimit} {
		if v < 0 {
			bad(k, "%d is negative; allowed: 0 (no limit) or more", v)
		}
	}
	if c.Images.PullTimeout.Duration < 0 {
		bad("images.pull_timeout", "%s is negative; allowed: 0 (no limit) or more", c.Images.PullTimeout)
	}
	if p := c.Images.Socket; p != "" && !filepath.IsAbs(p) {
		bad("images.socket", "%q must be empty or an absolute path", p)
	}
	for registry, dir := range c.Images.Shared {
		key := fmt.Sprintf("images.shared.%q", registry)
		if !filepath.IsAbs(dir) {
			bad(key, "%q must be an absolute path", dir)
		}
		if r, err := name.NewRegistry(registry, name.StrictValidation); err != nil || r.RegistryStr() != registry || registry == "docker.io" || registry == "index.docker.io" {
			bad(key, "%q is not a registry name a site may use for its shared images (HOST[:PORT], such as sqsh.site)", registry)
		}
	}
	if p := c.Enroot.LibraryPath; p != "" && !filepath.IsAbs(p) {
		bad("enroot.library_path", "%q must be empty or an absolute path", p)
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

// Keys is the configuration as its TOML file names it (tables and keys), for a
// verbose Status.
func (c Config) Keys() (map[string]any, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	out := map[string]any{}
	if _, err := toml.Decode(buf.String(), &out); err != nil {
		return nil, fmt.Errorf("decode configuration: %w", err)
	}
	return out, nil
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

// enrootLibraryDirs are where Enroot's packages and `make install` put its library.
var enrootLibraryDirs = []string{"/usr/lib/enroot", "/usr/local/lib/enroot", "/usr/lib64/enroot"}

// EnrootLibraryPath is Enroot's library directory: enroot.library_path, else the first
// install location holding common.sh; empty when Enroot is not installed.
func (c Config) EnrootLibraryPath() string {
	if c.Enroot.LibraryPath != "" {
		return c.Enroot.LibraryPath
	}
	for _, d := range enrootLibraryDirs {
		if _, err := os.Stat(filepath.Join(d, "common.sh")); err == nil {
			return d
		}
	}
	return ""
}
