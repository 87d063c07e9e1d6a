package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// SlurmConf is Slurm's cgroup.conf with the keys that decide a step's confinement, read
// with slurmd's meaning and defaults.
type SlurmConf struct {
	Path string // the file read; empty when Slurm's defaults apply

	CgroupPlugin       string // autodetect | cgroup/v1 | cgroup/v2
	ConstrainCores     bool
	ConstrainRAMSpace  bool
	ConstrainSwapSpace bool
	ConstrainDevices   bool
	AllowedRAMSpace    float32 // percent of the allocation
	AllowedSwapSpace   float32 // percent of the allocation
	MinRAMSpace        uint64  // MiB; no limit is set below this
	MaxRAMPercent      float32 // percent of the node's RAM
	MaxSwapPercent     float32 // percent of the node's RAM
	MemorySwappiness   *uint64 // unset: the kernel's value stays
	AllowedDevicesFile string
	EnableControllers  bool

	// Ignored are the keys read that do not change a container's confinement
	// (CgroupMountpoint, IgnoreSystemd, ...), for a debug log.
	Ignored []string
}

// DefaultSlurmConf is what slurmd uses when cgroup.conf is absent or silent.
func DefaultSlurmConf() SlurmConf {
	return SlurmConf{
		CgroupPlugin:    "autodetect",
		AllowedRAMSpace: 100, MinRAMSpace: 30, MaxRAMPercent: 100, MaxSwapPercent: 100,
	}
}

// ReadSlurmConf reads the cgroup.conf at path; an absent file means Slurm's defaults.
func ReadSlurmConf(path string) (SlurmConf, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return DefaultSlurmConf(), nil
	}
	if err != nil {
		return SlurmConf{}, fmt.Errorf("read Slurm cgroup.conf: %w", err)
	}
	defer f.Close()
	c, err := ParseSlurmConf(f, path)
	if err != nil {
		return SlurmConf{}, err
	}
	c.Path = path
	return c, nil
}

// ParseSlurmConf parses cgroup.conf text as Slurm does: "Key=Value" pairs, several to
// a line if need be, keys case-insensitive, "#" starting a comment. name is the file
// name errors mention.
func ParseSlurmConf(r io.Reader, name string) (SlurmConf, error) {
	c := DefaultSlurmConf()
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, pair := range strings.Fields(line) {
			key, value, ok := strings.Cut(pair, "=")
			if !ok || key == "" {
				return SlurmConf{}, fmt.Errorf("%s:%d: %q is not Key=Value", name, n, pair)
			}
			if err := c.set(key, value); err != nil {
				return SlurmConf{}, fmt.Errorf("%s:%d: %s: %w", name, n, key, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return SlurmConf{}, fmt.Errorf("read %s: %w", name, err)
	}
	return c, nil
}

func (c *SlurmConf) set(key, value string) error {
	var err error
	switch strings.ToLower(key) {
	case "cgroupplugin":
		switch v := strings.ToLower(value); v {
		case "autodetect", "cgroup/v1", "cgroup/v2":
			c.CgroupPlugin = v
		default:
			return fmt.Errorf("%q is not one of autodetect, cgroup/v1, cgroup/v2", value)
		}
	case "constraincores":
		c.ConstrainCores, err = slurmBool(value)
	case "constrainramspace":
		c.ConstrainRAMSpace, err = slurmBool(value)
	case "constrainswapspace":
		c.ConstrainSwapSpace, err = slurmBool(value)
	case "constraindevices":
		c.ConstrainDevices, err = slurmBool(value)
	case "enablecontrollers":
		c.EnableControllers, err = slurmBool(value)
	case "allowedramspace":
		c.AllowedRAMSpace, err = percent(value, 0)
	case "allowedswapspace":
		c.AllowedSwapSpace, err = percent(value, 0)
	case "maxrampercent":
		c.MaxRAMPercent, err = percent(value, 100)
	case "maxswappercent":
		c.MaxSwapPercent, err = percent(value, 100)
	case "minramspace":
		c.MinRAMSpace, err = megabytes(value)
	case "memoryswappiness":
		v, perr := strconv.ParseUint(value, 10, 64)
		if perr != nil || v > 100 {
			return fmt.Errorf("%q is not a swappiness from 0 to 100", value)
		}
		c.MemorySwappiness = &v
	case "alloweddevicesfile":
		c.AllowedDevicesFile = value
	default:
		c.Ignored = append(c.Ignored, key)
	}
	return err
}

// slurmBool reads the boolean spellings Slurm's parser accepts.
func slurmBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "true", "up", "1":
		return true, nil
	case "no", "false", "down", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not yes or no", s)
}

// percent reads a percentage ("120" or "120%"); limit 0 means no upper bound.
func percent(s string, limit float32) (float32, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a percentage", s)
	}
	if v < 0 || (limit > 0 && float32(v) > limit) {
		if limit > 0 {
			return 0, fmt.Errorf("%q must be 0 to %g percent", s, limit)
		}
		return 0, fmt.Errorf("%q must be 0 percent or more", s)
	}
	return float32(v), nil
}

// megabytes reads a size in MiB as Slurm takes it ("30"), also with a unit suffix
// ("512M", "2G", "1T").
func megabytes(s string) (uint64, error) {
	mult := uint64(1)
	switch strings.ToUpper(s[len(s)-min(len(s), 1):]) {
	case "M":
		s = s[:len(s)-1]
	case "G":
		mult, s = 1024, s[:len(s)-1]
	case "T":
		mult, s = 1024*1024, s[:len(s)-1]
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size in MiB", s)
	}
	return v * mult, nil
}

// CheckPlugin refuses a CgroupPlugin naming a cgroup version this host does not run,
// as slurmd refuses to start with it.
func (c SlurmConf) CheckPlugin() error {
	want := ""
	switch c.CgroupPlugin {
	case "cgroup/v1":
		want = "v1"
	case "cgroup/v2":
		want = "v2"
	default:
		return nil
	}
	have := "v1"
	if unified() {
		have = "v2"
	}
	if want != have {
		return fmt.Errorf("%s: CgroupPlugin=%s but this host runs cgroup %s; set CgroupPlugin=autodetect or cgroup/%s",
			c.Path, c.CgroupPlugin, have, have)
	}
	return nil
}
