package mig

import (
	"strings"
	"testing"
)

// mig-minors comes from the driver; a malformed file is an error, not a crash.
func FuzzParseCapMinors(f *testing.F) {
	f.Add("config 1\nmonitor 2\ngpu0/gi0/access 3\ngpu0/gi0/ci0/access 4\n")
	f.Add("gpu7/gi13/ci7/access 1048575\n")
	f.Fuzz(func(t *testing.T, text string) {
		m, err := ParseCapMinors(strings.NewReader(text))
		if err == nil {
			_, _, _ = m.Slice(0, 0, 0)
		}
	})
}
