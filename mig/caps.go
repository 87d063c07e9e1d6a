package mig

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// CapMinors maps the lines of /proc/driver/nvidia-caps/mig-minors ("gpu0/gi1/access 12",
// "gpu0/gi1/ci0/access 13") to their minors: the MIG capability device of a GPU
// instance or compute instance is /dev/nvidia-caps/nvidia-cap<minor>.
type CapMinors map[string]int

// ParseCapMinors reads mig-minors.
func ParseCapMinors(r io.Reader) (CapMinors, error) {
	out := CapMinors{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("mig-minors line %d: %q is not \"<name> <minor>\"", n, sc.Text())
		}
		minor, err := strconv.Atoi(f[1])
		if err != nil || minor < 0 {
			return nil, fmt.Errorf("mig-minors line %d: %q is not a minor number", n, f[1])
		}
		out[f[0]] = minor
	}
	return out, sc.Err()
}

// Slice returns the capability minors of GPU instance gi and compute instance ci on
// the GPU with the given device minor.
func (m CapMinors) Slice(gpuMinor, gi, ci int) (giMinor, ciMinor int, err error) {
	giKey := fmt.Sprintf("gpu%d/gi%d/access", gpuMinor, gi)
	ciKey := fmt.Sprintf("gpu%d/gi%d/ci%d/access", gpuMinor, gi, ci)
	var ok bool
	if giMinor, ok = m[giKey]; !ok {
		return 0, 0, fmt.Errorf("mig-minors has no %s", giKey)
	}
	if ciMinor, ok = m[ciKey]; !ok {
		return 0, 0, fmt.Errorf("mig-minors has no %s", ciKey)
	}
	return giMinor, ciMinor, nil
}
