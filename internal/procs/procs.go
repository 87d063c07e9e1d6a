// Package procs reads host processes out of /proc: it finds them by what they are,
// when no PID was written down (a daemon killed before it recorded one), and counts
// what they hold (threads, descriptors, limits) for the CRI metrics. It is a leaf: it
// imports nothing of enroot-cri.
package procs

import (
	"os"
	"strconv"
)

// Find returns the first PID in /proc for which match is true; 0 when there is none.
func Find(match func(pid int) bool) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && match(pid) {
			return pid
		}
	}
	return 0
}
