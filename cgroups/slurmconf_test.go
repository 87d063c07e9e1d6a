package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSlurmConf(t *testing.T) {
	swappiness := uint64(10)
	cases := []struct {
		name, text string
		edit       func(*SlurmConf)
	}{
		{"empty is Slurm's defaults", "", func(*SlurmConf) {}},
		{"keys are case-insensitive, comments ignored", `
# Slurm cgroup support configuration file
CGROUPPLUGIN=cgroup/v1   # trailing comment
constrainCores=yes
ConstrainRAMSpace=Yes
ConstrainSwapSpace=true
ConstrainDevices=no
`, func(c *SlurmConf) {
			c.CgroupPlugin, c.ConstrainCores, c.ConstrainRAMSpace, c.ConstrainSwapSpace = "cgroup/v1", true, true, true
		}},
		{"percentages, sizes, swappiness", `
AllowedRAMSpace=120
AllowedSwapSpace=12.5%
MaxRAMPercent=90
MaxSwapPercent=50
MinRAMSpace=1G
MemorySwappiness=10
AllowedDevicesFile=/etc/slurm/cgroup_allowed_devices_file.conf
EnableControllers=yes`, func(c *SlurmConf) {
			c.AllowedRAMSpace, c.AllowedSwapSpace, c.MaxRAMPercent, c.MaxSwapPercent = 120, 12.5, 90, 50
			c.MinRAMSpace, c.MemorySwappiness, c.EnableControllers = 1024, &swappiness, true
			c.AllowedDevicesFile = "/etc/slurm/cgroup_allowed_devices_file.conf"
		}},
		{"several pairs on a line", "ConstrainCores=yes ConstrainRAMSpace=yes", func(c *SlurmConf) {
			c.ConstrainCores, c.ConstrainRAMSpace = true, true
		}},
		{"keys that do not confine are kept for the log", "CgroupAutomount=yes\nIgnoreSystemd=yes", func(c *SlurmConf) {
			c.Ignored = []string{"CgroupAutomount", "IgnoreSystemd"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSlurmConf(strings.NewReader(tc.text), "cgroup.conf")
			require.NoError(t, err)
			want := DefaultSlurmConf()
			tc.edit(&want)
			assert.Equal(t, want, got)
		})
	}
}

func TestParseSlurmConfErrors(t *testing.T) {
	cases := []struct{ text, want string }{
		{"ConstrainCores", `cgroup.conf:1: "ConstrainCores" is not Key=Value`},
		{"\nConstrainRAMSpace=perhaps", `cgroup.conf:2: ConstrainRAMSpace: "perhaps" is not yes or no`},
		{"AllowedRAMSpace=lots", `cgroup.conf:1: AllowedRAMSpace: "lots" is not a percentage`},
		{"AllowedRAMSpace=-5", `AllowedRAMSpace: "-5" must be 0 percent or more`},
		{"MaxRAMPercent=101", `MaxRAMPercent: "101" must be 0 to 100 percent`},
		{"MinRAMSpace=3X", `MinRAMSpace: "3X" is not a size in MiB`},
		{"MemorySwappiness=200", `MemorySwappiness: "200" is not a swappiness from 0 to 100`},
		{"CgroupPlugin=cgroup/v3", `CgroupPlugin: "cgroup/v3" is not one of autodetect, cgroup/v1, cgroup/v2`},
	}
	for _, tc := range cases {
		_, err := ParseSlurmConf(strings.NewReader(tc.text), "cgroup.conf")
		assert.ErrorContains(t, err, tc.want, tc.text)
	}
}

func TestReadSlurmConf(t *testing.T) {
	dir := t.TempDir()
	c, err := ReadSlurmConf(filepath.Join(dir, "absent.conf"))
	require.NoError(t, err)
	assert.Equal(t, DefaultSlurmConf(), c)

	path := filepath.Join(dir, "cgroup.conf")
	require.NoError(t, os.WriteFile(path, []byte("ConstrainRAMSpace=yes\nAllowedRAMSpace=x\n"), 0o644))
	_, err = ReadSlurmConf(path)
	assert.ErrorContains(t, err, path+`:2: AllowedRAMSpace: "x" is not a percentage`)
}
