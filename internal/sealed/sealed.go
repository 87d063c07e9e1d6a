package sealed

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// minFd is where Copy puts the descriptor: above the few that child processes get
// as ExtraFiles, so that /proc/self/fd/N still names the copy in a child before it
// executes.
const minFd = 100

// Copy returns a sealed, close-on-exec in-memory copy of the executable at path.
// Execute it through Path.
func Copy(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate(filepath.Base(path), unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("create sealed copy of %s: %w", path, err)
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, minFd)
	unix.Close(fd)
	if err != nil {
		return nil, fmt.Errorf("move sealed copy: %w", err)
	}
	f := os.NewFile(uintptr(high), filepath.Base(path)+" (sealed)")
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("copy %s: %w", path, err)
	}
	const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal copy of %s: %w", path, err)
	}
	return f, nil
}

// Path is the name under which this process, and a child it starts before the child
// executes, reaches f.
func Path(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

// IsSealed reports whether f carries every seal Copy sets.
func IsSealed(f *os.File) bool {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	const want = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	return err == nil && seals&want == want
}
