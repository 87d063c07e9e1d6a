package procs

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Counts adds up the threads, open file descriptors and sockets of pids (processes
// that are gone count nothing).
func Counts(pids []int) (threads, fds, sockets uint64) {
	for _, pid := range pids {
		p := filepath.Join("/proc", strconv.Itoa(pid))
		if entries, err := os.ReadDir(filepath.Join(p, "task")); err == nil {
			threads += uint64(len(entries))
		}
		entries, err := os.ReadDir(filepath.Join(p, "fd"))
		if err != nil {
			continue
		}
		fds += uint64(len(entries))
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(p, "fd", e.Name())); err == nil && strings.HasPrefix(target, "socket:") {
				sockets++
			}
		}
	}
	return threads, fds, sockets
}

// SoftLimit is the soft value of one of a process's resource limits, by its name in
// /proc/PID/limits ("Max open files"); false when it is unlimited or unreadable.
func SoftLimit(pid int, name string) (uint64, bool) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "limits"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, false
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		return v, err == nil
	}
	return 0, false
}
