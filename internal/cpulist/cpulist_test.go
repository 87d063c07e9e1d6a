package cpulist

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAndFormat(t *testing.T) {
	cpus, err := Parse("0-3,8,10-11")
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1, 2, 3, 8, 10, 11}, cpus)
	assert.Equal(t, "0-3,8,10-11", Format(cpus))
	for _, bad := range []string{"a", "3-1", "1,,2", "-1"} {
		_, err := Parse(bad)
		assert.Error(t, err, bad)
	}
}
