package image

import (
	"io/fs"
	"syscall"
)

// allocated is the disk space a file takes (a sparse file takes less than its size).
func allocated(info fs.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Blocks) * 512
	}
	return uint64(info.Size())
}
