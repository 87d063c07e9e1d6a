package enroot

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// DefaultSquashOptions is Enroot's default ENROOT_SQUASH_OPTIONS.
const DefaultSquashOptions = "-comp lzo -noD -exit-on-error"

// Settings are the Enroot configuration values of a node: the files' settings with the
// process environment laid over them.
type Settings map[string]string

// SquashOptions returns ENROOT_SQUASH_OPTIONS, or Enroot's default when unset.
func (s Settings) SquashOptions() string {
	if v, ok := s["ENROOT_SQUASH_OPTIONS"]; ok {
		return v
	}
	return DefaultSquashOptions
}

var confName = regexp.MustCompile(`^(ENROOT_[A-Z0-9_]+|NVIDIA_[A-Z0-9_]+|MELLANOX_[A-Z0-9_]+|SSL_CERT_[A-Z0-9_]+|[A-Za-z0-9_]*_proxy)$`)

// LoadSettings reads <dir>/enroot.conf then <dir>/enroot.conf.d/*.conf (glob order);
// environ (NAME=value strings, normally os.Environ()) overrides them. Missing files are
// not errors: a node without Enroot has an empty configuration.
func LoadSettings(dir string, environ []string) (Settings, error) {
	s := Settings{}
	files := []string{filepath.Join(dir, "enroot.conf")}
	dropins, err := filepath.Glob(filepath.Join(dir, "enroot.conf.d", "*.conf"))
	if err != nil {
		return nil, fmt.Errorf("list enroot.conf.d: %w", err)
	}
	sort.Strings(dropins)
	for _, f := range append(files, dropins...) {
		if err := s.readFile(f); err != nil {
			return nil, err
		}
	}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if ok && confName.MatchString(name) {
			s.set(name, value)
		}
	}
	return s, nil
}

func (s Settings) readFile(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read enroot configuration: %w", err)
	}
	defer f.Close()
	if err := s.parse(f); err != nil {
		return fmt.Errorf("read enroot configuration %s: %w", path, err)
	}
	return nil
}

// parse reads `NAME value` lines; comments and names Enroot ignores are skipped, and
// $VAR / ${VAR} in values expand from the settings read so far.
func (s Settings) parse(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		if i := strings.IndexAny(line, " \t"); i > 0 {
			name, value = line[:i], line[i+1:]
		}
		if !confName.MatchString(name) {
			continue
		}
		value = unquote(strings.TrimSpace(value))
		s.set(name, os.Expand(value, func(v string) string { return s[v] }))
	}
	return sc.Err()
}

// set stores a value; Enroot's negative words unset a flag.
func (s Settings) set(name, value string) {
	switch strings.ToLower(value) {
	case "no", "n", "false", "f":
		delete(s, name)
	default:
		s[name] = value
	}
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		return v[1 : len(v)-1]
	}
	return v
}

// Version is the Enroot release whose contract (../shared/ENROOT.md) the runtime
// follows; hooks see it as ENROOT_VERSION.
const Version = "4.1.2"

// Installation is what Enroot's exported defaults depend on.
type Installation struct {
	LibraryPath string // Enroot's library directory (common.sh)
	SysconfPath string // the configuration directory
	Home        string // the user's home, for the XDG paths
	Processors  int
}

// Exported is the environment Enroot exports to its hooks: the settings, and for each
// setting they leave out Enroot's default (enroot.in); flags that default to false are
// unset there and left out here.
func (s Settings) Exported(in Installation) []string {
	home := in.Home
	if home == "" {
		home = "/"
	}
	defaults := map[string]string{
		"ENROOT_LIBRARY_PATH": in.LibraryPath, "ENROOT_SYSCONF_PATH": in.SysconfPath,
		"ENROOT_RUNTIME_PATH": "/run/enroot", "ENROOT_CONFIG_PATH": home + "/.config/enroot",
		"ENROOT_CACHE_PATH": home + "/.cache/enroot", "ENROOT_DATA_PATH": home + "/.local/share/enroot",
		"ENROOT_TEMP_PATH": "/tmp", "ENROOT_GZIP_PROGRAM": "gzip", "ENROOT_ZSTD_OPTIONS": "-1",
		"ENROOT_SQUASH_OPTIONS": DefaultSquashOptions, "ENROOT_MAX_PROCESSORS": fmt.Sprint(max(in.Processors, 1)),
		"ENROOT_MAX_CONNECTIONS": "10", "ENROOT_CONNECT_TIMEOUT": "30", "ENROOT_TRANSFER_TIMEOUT": "0",
		"ENROOT_TRANSFER_RETRIES": "0", "ENROOT_LOGIN_SHELL": "true", "ENROOT_NATIVE_OVERLAYFS": "true",
		"ENROOT_VERSION": Version,
	}
	out := Settings{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range s {
		out[k] = v
	}
	out["ENROOT_VERSION"] = Version
	return out.Env()
}

// Flag reports whether a flag setting is on (set, and not one of Enroot's negative
// words, which LoadSettings already unsets).
func (s Settings) Flag(name string) bool {
	_, ok := s[name]
	return ok
}
