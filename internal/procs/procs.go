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
