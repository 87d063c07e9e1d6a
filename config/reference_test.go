package config

import (
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The reference is generated; UPDATE_DOCS=1 (make docs) rewrites it.
func TestReferenceIsGenerated(t *testing.T) {
	const path = "../docs/config-reference.md"
	if os.Getenv("UPDATE_DOCS") != "" {
		require.NoError(t, os.WriteFile(path, []byte(Reference()), 0o644))
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, Reference(), string(data), "docs/config-reference.md is stale: run make docs")
}

// Every key of the defaults has a row in configuration.md too.
func TestConfigurationDocNamesEveryKey(t *testing.T) {
	data, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err)
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_.<>]+)` \\| `").FindAllStringSubmatch(Reference(), -1) {
		key := regexp.MustCompile(`^runtimes\.(kubernetes|enroot)\.`).ReplaceAllString(m[1], "runtimes.<h>.")
		assert.Contains(t, string(data), "`"+key+"`", "docs/configuration.md does not describe %s", key)
	}
}
