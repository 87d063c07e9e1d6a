package enroot

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// envName is a valid environment variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseEnviron reads NAME=value lines as Enroot reads environ.d files and the
// container's environment file: comments, blank lines, invalid names and ENROOT_*
// names are dropped; ${VAR} and $VAR expand from lookup; a bare NAME takes its value
// from lookup when it has one.
func ParseEnviron(r io.Reader, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, hasValue := strings.Cut(line, "=")
		if !envName.MatchString(name) || strings.HasPrefix(name, "ENROOT_") {
			continue
		}
		if !hasValue {
			v, ok := lookup(name)
			if !ok {
				continue
			}
			value = v
		} else {
			value = os.Expand(unquote(value), func(v string) string { s, _ := lookup(v); return s })
		}
		out = append(out, name+"="+value)
	}
	return out, sc.Err()
}

// MountEntry is one fstab line of mounts.d or $ENROOT_MOUNTS.
type MountEntry struct {
	Source, Target, Type string
	Options              []string // mount options without Enroot's x-* and nofail
	Create               string   // x-create: "dir", "file", "auto" or ""
	Move, Detach         bool     // x-move, x-detach
	NoFail               bool
	// Pass is the sixth field: Enroot mounts the entries of pass -1 before the hooks
	// run, the others after.
	Pass int
}

// ParseFstab reads fstab lines; ${VAR} in the source and target expand from lookup
// (ENROOT_ROOTFS among them). A line with fewer than two fields is an error naming
// the line.
func ParseFstab(r io.Reader, lookup func(string) (string, bool)) ([]MountEntry, error) {
	var out []MountEntry
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d %q: want SOURCE TARGET [TYPE [OPTIONS]]", n, line)
		}
		expand := func(s string) string { return os.Expand(s, func(v string) string { x, _ := lookup(v); return x }) }
		e := MountEntry{Source: expand(f[0]), Target: expand(f[1]), Type: "none"}
		if len(f) > 2 {
			e.Type = f[2]
		}
		if len(f) > 3 {
			for _, o := range strings.Split(f[3], ",") {
				switch {
				case strings.HasPrefix(o, "x-create="):
					e.Create = strings.TrimPrefix(o, "x-create=")
				case o == "x-move":
					e.Move = true
				case o == "x-detach":
					e.Detach = true
				case o == "nofail":
					e.NoFail = true
				case o == "silent" || o == "defaults" || o == "":
				default:
					e.Options = append(e.Options, o)
				}
			}
		}
		if len(f) > 5 {
			pass, err := strconv.Atoi(f[5])
			if err != nil {
				return nil, fmt.Errorf("line %d %q: pass %q is not a number", n, line, f[5])
			}
			e.Pass = pass
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// DropIns lists <dir>/<sub>/*<ext> in glob order.
func DropIns(dir, sub, ext string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, sub, "*"+ext))
	sort.Strings(files)
	return files
}

// Hooks lists the executable hooks of <dir>/hooks.d in the order Enroot runs them.
func Hooks(dir string) []string {
	var out []string
	for _, f := range DropIns(dir, "hooks.d", ".sh") {
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			out = append(out, f)
		}
	}
	return out
}

// HasHook reports whether <dir>/hooks.d has a hook Enroot runs (executable) whose name
// contains name ("nvidia": 98-nvidia.sh and site copies of it).
func HasHook(dir, name string) bool {
	for _, h := range Hooks(dir) {
		if strings.Contains(filepath.Base(h), name) {
			return true
		}
	}
	return false
}

// Environ reads every environ.d/*.env file of dir, in order.
func Environ(dir string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	for _, f := range DropIns(dir, "environ.d", ".env") {
		file, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		env, err := ParseEnviron(file, lookup)
		file.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		out = append(out, env...)
	}
	return out, nil
}

// Env returns the settings as NAME=value strings, sorted.
func (s Settings) Env() []string {
	out := make([]string, 0, len(s))
	for k, v := range s {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// MergeEnv appends add to env, a later value of a name replacing an earlier one in
// place, as Enroot's environment files combine.
func MergeEnv(env, add []string) []string {
	out := append([]string{}, env...)
	index := map[string]int{}
	for i, kv := range out {
		name, _, _ := strings.Cut(kv, "=")
		index[name] = i
	}
	for _, kv := range add {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := index[name]; ok {
			out[i] = kv
			continue
		}
		index[name] = len(out)
		out = append(out, kv)
	}
	return out
}

// Lookup finds name in NAME=value strings, the last one winning.
func Lookup(env []string, name string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v, true
		}
	}
	return "", false
}
