package config

import (
	"fmt"
	"strings"
)

// Reference renders the configuration reference (docs/config-reference.md) from
// DefaultTOML: one row per key with its default and the comments above it, so the
// document cannot drift from what `enroot-cri config` prints and `serve` accepts.
func Reference() string {
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Generated from `enroot-cri config` (the built-in defaults) by `make docs`; a test\n")
	b.WriteString("fails when this file and the code differ. See [configuration.md](configuration.md) for\n")
	b.WriteString("how the file is read and validated.\n\n")
	b.WriteString("| Key | Default | Meaning |\n|---|---|---|\n")
	table := ""
	var notes []string
	for _, line := range strings.Split(DefaultTOML, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			notes = nil
		case strings.HasPrefix(line, "#"):
			notes = append(notes, strings.TrimSpace(strings.TrimPrefix(line, "#")))
		case strings.HasPrefix(line, "["):
			table = strings.Trim(line, "[]") + "."
			if len(notes) > 0 {
				fmt.Fprintf(&b, "| `[%s]` | | %s |\n", strings.TrimSuffix(table, "."), cell(notes))
			}
			notes = nil
		default:
			key, value, _ := strings.Cut(line, "=")
			key, value = strings.TrimSpace(key), strings.TrimSpace(value)
			comment := ""
			if i := strings.Index(value, " #"); i >= 0 {
				value, comment = strings.TrimSpace(value[:i]), strings.TrimSpace(value[i+2:])
			}
			if comment != "" {
				notes = append(notes, comment)
			}
			fmt.Fprintf(&b, "| `%s%s` | `%s` | %s |\n", table, key, value, cell(notes))
			notes = nil
		}
	}
	return b.String()
}

// cell joins comment lines into one table cell.
func cell(lines []string) string {
	return strings.ReplaceAll(strings.Join(lines, " "), "|", `\|`)
}
