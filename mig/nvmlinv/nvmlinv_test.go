//go:build cgo

package nvmlinv

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDiscoverFakeMachines(t *testing.T) {
	cases := []struct {
		machine, name    string
		oneSlice         string
		three, four      string
		gpuMemoryMiBOver uint64
	}{
		{"dgxa100", "Mock NVIDIA A100-SXM4-40GB", "1g.5gb", "3g.20gb", "4g.20gb", 40000},
		{"dgxh100", "NVIDIA H100 80GB HBM3", "1g.10gb", "3g.40gb", "4g.40gb", 80000},
		// go-nvlib names a profile by its share of the GPU's memory in eighths; the fake
		// H200's 1-slice instance is 18432 MB of 141 GiB, just over an eighth, so it is
		// named 1g.35gb (a real H200 reports slightly under an eighth: 1g.18gb).
		{"dgxh200", "NVIDIA H200 141GB HBM3e", "1g.35gb", "3g.88gb", "4g.88gb", 140000},
	}
	for _, tc := range cases {
		t.Run(tc.machine, func(t *testing.T) {
			lib, err := Fake(tc.machine)
			require.NoError(t, err)
			inv, err := Discover(lib)
			require.NoError(t, err)
			require.Len(t, inv.GPUs, 8)
			g0, g1, g2 := inv.GPUs[6], inv.GPUs[7], inv.GPUs[2]
			assert.Equal(t, tc.name, g0.Name)
			assert.Greater(t, g0.MemoryMiB, tc.gpuMemoryMiBOver)
			assert.True(t, g0.MIGCurrent)
			assert.False(t, g2.MIGCurrent)
			assert.Empty(t, g2.Slices)
			assert.Equal(t, 2, g2.Index)
			assert.Regexp(t, `^GPU-`, g2.UUID)
			require.Len(t, g0.Slices, 7)
			for i, s := range g0.Slices {
				assert.Equal(t, tc.oneSlice, s.Profile)
				assert.Equal(t, i, s.GI)
				assert.Equal(t, 0, s.CI)
				assert.Equal(t, 6, s.GPU)
				assert.Regexp(t, `^MIG-`, s.UUID)
			}
			require.Len(t, g1.Slices, 2)
			assert.Equal(t, tc.three, g1.Slices[0].Profile)
			assert.Equal(t, tc.four, g1.Slices[1].Profile)
			assert.Len(t, inv.Units(), 7+2+6, "slices of MIG GPUs, whole GPUs otherwise")
		})
	}
}

func TestFakeUnknownMachine(t *testing.T) {
	_, err := Fake("dgx-z")
	assert.ErrorContains(t, err, "dgxa100, dgxh100 or dgxh200")
}
