package image

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// enrootFiles returns the files `enroot import` generates from an image configuration,
// keyed by their path in the image: /etc/environment, /etc/fstab, /etc/rc and
// /etc/rc.local (see ENROOT.md), byte for byte as Enroot writes them.
func enrootFiles(cfg v1.Config) map[string]string {
	var env strings.Builder
	for _, e := range cfg.Env {
		env.WriteString(e + "\n")
	}

	var fstab strings.Builder
	for _, v := range slices.Sorted(maps.Keys(cfg.Volumes)) {
		fmt.Fprintf(&fstab, "${ENROOT_ROOTFS}%s %s none x-create=dir,bind,rw,nosuid,nodev\n", v, v)
	}

	return map[string]string{
		"etc/environment": env.String(),
		"etc/fstab":       fstab.String(),
		"etc/rc":          rcScript(cfg),
		"etc/rc.local": "# This file is sourced by /etc/rc when the container starts.\n" +
			"# It can be used to manipulate the entrypoint or the command of the container.\n",
	}
}

// rcScript is the image's command script, byte for byte as Enroot's import writes it
// (docker::configure): labels as comments, the working directory, /etc/rc.local, and
// exec of the entrypoint with the script's arguments, or with the image's command when
// there are none. Labels come in key order (Enroot keeps the config's, which registries
// write sorted).
func rcScript(cfg v1.Config) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(cfg.Labels)) {
		fmt.Fprintf(&b, "# %s %s\n", k, strings.ReplaceAll(cfg.Labels[k], "\n", " "))
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	workdir := cfg.WorkingDir
	if workdir == "" {
		workdir = "/"
	}
	cmd := cfg.Cmd
	if len(cfg.Entrypoint) == 0 && len(cmd) == 0 {
		cmd = []string{"/bin/sh"}
	}
	ep := bashQuoteWords(cfg.Entrypoint)
	fmt.Fprintf(&b, "mkdir -p \"%s\" 2> /dev/null\n", workdir)
	fmt.Fprintf(&b, "cd \"%s\" && unset OLDPWD || exit 1\n", workdir)
	b.WriteString("\nif [ -s /etc/rc.local ]; then\n    . /etc/rc.local\nfi\n\n")
	fmt.Fprintf(&b, "if [ $# -gt 0 ]; then\n    exec %s \"$@\"\nelse\n    exec %s %s\nfi\n", ep, ep, bashQuoteWords(cmd))
	return b.String()
}

// bashQuoteWords quotes words as bash's ${words[@]@Q} does, joined by spaces.
func bashQuoteWords(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = bashQuote(w)
	}
	return strings.Join(out, " ")
}

// bashQuote is bash's @Q quoting of one word: 'word', or $'…' when it holds control
// characters.
func bashQuote(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	var b strings.Builder
	b.WriteString("$'")
	for _, c := range []byte(s) {
		switch c {
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		default:
			if c < 0x20 || c == 0x7f {
				fmt.Fprintf(&b, "\\%03o", c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteString("'")
	return b.String()
}
