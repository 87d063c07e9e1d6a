package image

import (
	"bufio"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// stockRCLocal is the /etc/rc.local that `enroot import` writes.
const stockRCLocal = "# This file is sourced by /etc/rc when the container starts.\n" +
	"# It can be used to manipulate the entrypoint or the command of the container.\n"

// rcEntrypoint runs an Enroot image's /etc/rc as `enroot start` does (the shell with
// the script and the command as its arguments).
var rcEntrypoint = []string{"/bin/sh", "/etc/rc"}

// enrootConfig recovers an image configuration from the files Enroot keeps it in
// (ENROOT.md): /etc/environment gives Env, /etc/fstab's bind mounts of
// ${ENROOT_ROOTFS}/DIR give Volumes, and /etc/rc the working directory, entrypoint
// and command. When /etc/rc is the script `enroot import` writes and /etc/rc.local is
// unchanged, the entrypoint and command are the ones the script execs, so a pod's
// command and args replace them as Kubernetes users expect. Otherwise (a script or
// rc.local a user edited before `enroot export`) the entrypoint is the script itself,
// so the container starts exactly as `enroot start` starts it.
func enrootConfig(files map[string]string) v1.Config {
	var cfg v1.Config
	cfg.Env = rawEnviron(files["etc/environment"])
	for _, v := range fstabVolumes(files["etc/fstab"]) {
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		cfg.Volumes[v] = struct{}{}
	}
	rc, hasRC := files["etc/rc"]
	if !hasRC {
		// enroot start runs the command through the shell when there is no /etc/rc.
		return cfg
	}
	parsed, err := parseRC(rc)
	if err != nil {
		cfg.Entrypoint = rcEntrypoint
		return cfg
	}
	cfg.WorkingDir = parsed.WorkingDir
	if parsed.WorkingDir == "/" {
		cfg.WorkingDir = ""
	}
	local, hasLocal := files["etc/rc.local"]
	if rcScript(v1.Config{Entrypoint: parsed.Entrypoint, Cmd: parsed.Cmd, WorkingDir: cfg.WorkingDir}) != withoutComments(rc) ||
		(hasLocal && local != stockRCLocal && local != "") {
		cfg.Entrypoint, cfg.Cmd = rcEntrypoint, nil
		return cfg
	}
	cfg.Entrypoint, cfg.Cmd = nilIfEmpty(parsed.Entrypoint), nilIfEmpty(parsed.Cmd)
	return cfg
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// rawEnviron is /etc/environment as Enroot reads it (common::envfmt): NAME=value lines,
// surrounding quotes removed, comments, blank and ill-formed lines dropped. ${VAR}
// references stay as written: Enroot expands them from the caller at each start.
func rawEnviron(text string) []string {
	var env []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimLeft(strings.TrimRight(line, "\r"), " \t")
		name, value, ok := strings.Cut(line, "=")
		if !ok || !validEnvName(name) {
			continue
		}
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		env = append(env, name+"="+value)
	}
	return env
}

func validEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range []byte(s) {
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// fstabVolumes are the image volumes `enroot import` wrote to /etc/fstab
// ("${ENROOT_ROOTFS}/DIR /DIR none x-create=dir,bind,…").
func fstabVolumes(text string) []string {
	var vols []string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "${ENROOT_ROOTFS}"+f[1] && strings.HasPrefix(f[1], "/") && strings.Contains(","+f[3]+",", ",bind,") {
			vols = append(vols, f[1])
		}
	}
	return vols
}

// withoutComments drops the label comments (and the blank line after them) that open
// an Enroot /etc/rc.
func withoutComments(rc string) string {
	lines := strings.SplitAfter(rc, "\n")
	i := 0
	for i < len(lines) && strings.HasPrefix(lines[i], "#") {
		i++
	}
	if i > 0 && i < len(lines) && lines[i] == "\n" {
		i++
	}
	return strings.Join(lines[i:], "")
}

// rcParts is what an Enroot /etc/rc does.
type rcParts struct {
	WorkingDir      string
	Entrypoint, Cmd []string
}

// parseRC reads the working directory, entrypoint and command out of an /etc/rc in
// the form `enroot import` writes.
func parseRC(rc string) (rcParts, error) {
	var p rcParts
	var withArgs, withoutArgs []string
	sc := bufio.NewScanner(strings.NewReader(rc))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	state := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "cd ") && strings.HasSuffix(line, " && unset OLDPWD || exit 1"):
			dir := strings.TrimSuffix(strings.TrimPrefix(line, "cd "), " && unset OLDPWD || exit 1")
			if len(dir) < 2 || dir[0] != '"' || dir[len(dir)-1] != '"' {
				return p, fmt.Errorf("working directory line %q", line)
			}
			p.WorkingDir = dir[1 : len(dir)-1]
		case line == "if [ $# -gt 0 ]; then":
			state = "args"
		case line == "else" && state == "args":
			state = "noargs"
		case strings.HasPrefix(line, "exec ") && state != "":
			words, err := bashWords(strings.TrimPrefix(line, "exec "))
			if err != nil {
				return p, err
			}
			if state == "args" {
				withArgs = words
			} else {
				withoutArgs = words
			}
		}
	}
	if err := sc.Err(); err != nil {
		return p, err
	}
	if len(withArgs) == 0 || withArgs[len(withArgs)-1] != `"$@"` {
		return p, errors.New(`no "exec ENTRYPOINT "$@"" line`)
	}
	p.Entrypoint = withArgs[:len(withArgs)-1]
	if len(withoutArgs) < len(p.Entrypoint) {
		return p, errors.New("no exec line for the command")
	}
	for i, w := range p.Entrypoint {
		if withoutArgs[i] != w {
			return p, errors.New("the two exec lines have different entrypoints")
		}
	}
	p.Cmd = withoutArgs[len(p.Entrypoint):]
	for _, w := range append(slices.Clone(p.Entrypoint), p.Cmd...) {
		if w == `"$@"` {
			return p, errors.New(`"$@" in the middle of a command`)
		}
	}
	return p, nil
}

// bashWords splits a line of quoted words as bash's @Q quoting writes them ('…',
// $'…') and returns them unquoted; the word "$@" is returned as written. Anything a
// shell would expand is an error: only the form Enroot writes is understood.
func bashWords(line string) ([]string, error) {
	var words []string
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) {
			return words, nil
		}
		var w strings.Builder
		for i < len(line) && line[i] != ' ' && line[i] != '\t' {
			switch {
			case strings.HasPrefix(line[i:], `"$@"`):
				w.WriteString(`"$@"`)
				i += 4
			case line[i] == '\'':
				end := strings.IndexByte(line[i+1:], '\'')
				if end < 0 {
					return nil, errors.New("unterminated quote")
				}
				w.WriteString(line[i+1 : i+1+end])
				i += end + 2
			case strings.HasPrefix(line[i:], "$'"):
				n, s, err := ansiCQuoted(line[i+2:])
				if err != nil {
					return nil, err
				}
				w.WriteString(s)
				i += 2 + n
			case line[i] == '\\' && i+1 < len(line):
				w.WriteByte(line[i+1])
				i += 2
			case strings.IndexByte("\"$`;&|<>(){}*?[~#!", line[i]) >= 0:
				return nil, fmt.Errorf("shell syntax %q is not Enroot's quoting", line[i:])
			default:
				w.WriteByte(line[i])
				i++
			}
		}
		words = append(words, w.String())
	}
}

// ansiCQuoted decodes the body of a $'…' word up to its closing quote; n is how many
// bytes of s it used, the quote included.
func ansiCQuoted(s string) (n int, out string, err error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\'' {
			return i + 1, b.String(), nil
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(s) {
			break
		}
		i++
		switch e := s[i]; e {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'e', 'E':
			b.WriteByte(0x1b)
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case '\\', '\'', '"', '?':
			b.WriteByte(e)
		case '0', '1', '2', '3', '4', '5', '6', '7':
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			v, _ := strconv.ParseUint(s[i:j], 8, 8)
			b.WriteByte(byte(v))
			i = j - 1
		case 'x':
			j := i + 1
			for j < len(s) && j < i+3 && strings.IndexByte("0123456789abcdefABCDEF", s[j]) >= 0 {
				j++
			}
			if j == i+1 {
				return 0, "", errors.New(`\x without hex digits`)
			}
			v, _ := strconv.ParseUint(s[i+1:j], 16, 8)
			b.WriteByte(byte(v))
			i = j - 1
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return 0, "", errors.New("unterminated $'…' quote")
}
