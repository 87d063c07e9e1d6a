package cgroups

import (
	"strings"
	"testing"
)

// cgroup.conf is the administrator's, but a malformed one must stop the daemon with a
// message, never crash it.
func FuzzParseSlurmConf(f *testing.F) {
	for _, seed := range []string{
		"ConstrainCores=yes\nConstrainRAMSpace=yes AllowedRAMSpace=120%\nMinRAMSpace=30\n",
		"CgroupPlugin=cgroup/v2\nMaxRAMPercent=98.5\nAllowedSwapSpace=0\n# comment\n",
		"AllowedDevicesFile=/etc/slurm/devices\nConstrainDevices=1\nMemorySwappiness=-1\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		_, _ = ParseSlurmConf(strings.NewReader(text), "cgroup.conf")
	})
}
