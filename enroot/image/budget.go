package image

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/errdefs"
)

// Limits bound one pull against hostile images (a gzip bomb turns megabytes into
// gigabytes): the uncompressed bytes and the entries of all its layers, and the free
// space the store's filesystem keeps. Zero means no bound.
type Limits struct {
	MaxBytes     int64
	MaxEntries   int64
	MinFreeBytes int64
}

// freeCheckEvery is how many bytes a pull writes between checks of the free space.
const freeCheckEvery = 64 << 20

// budget counts what a pull writes against its Limits.
type budget struct {
	limits         Limits
	dir            string // on the filesystem the pull writes to
	mu             sync.Mutex
	bytes, entries int64
	sinceCheck     int64
	statfs         func(string, *unix.Statfs_t) error
}

func newBudget(l Limits, dir string) *budget {
	return &budget{limits: l, dir: dir, statfs: unix.Statfs}
}

// entry accounts one layer entry of size bytes (0 for all but regular files) before
// it is written.
func (b *budget) entry(size int64) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.entries++
	b.bytes += size
	b.sinceCheck += size
	l := b.limits
	switch {
	case l.MaxEntries > 0 && b.entries > l.MaxEntries:
		return errdefs.WithKind(fmt.Errorf("the image has more than %d files and directories (images.max_entries)", l.MaxEntries), errdefs.ErrResourceExhausted)
	case l.MaxBytes > 0 && b.bytes > l.MaxBytes:
		return errdefs.WithKind(fmt.Errorf("the image unpacks to more than %d bytes (images.max_image_bytes)", l.MaxBytes), errdefs.ErrResourceExhausted)
	}
	if l.MinFreeBytes > 0 && (b.sinceCheck >= freeCheckEvery || b.entries == 1) {
		b.sinceCheck = 0
		return b.checkFree(size)
	}
	return nil
}

// checkFree refuses to write next bytes when the filesystem would keep less than
// MinFreeBytes free.
func (b *budget) checkFree(next int64) error {
	var st unix.Statfs_t
	if err := b.statfs(b.dir, &st); err != nil {
		return fmt.Errorf("check free space of %s: %w", b.dir, err)
	}
	free := int64(st.Bavail) * st.Bsize //nolint:gosec // block counts fit
	if free-next < b.limits.MinFreeBytes {
		return errdefs.WithKind(fmt.Errorf("%s has %d bytes free, and a pull keeps at least %d free (images.min_free_bytes)",
			b.dir, free, b.limits.MinFreeBytes), errdefs.ErrResourceExhausted)
	}
	return nil
}

// addBytes accounts n more bytes of an image file being copied into the store.
func (b *budget) addBytes(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	first := b.bytes == 0
	b.bytes += n
	b.sinceCheck += n
	if l := b.limits; l.MaxBytes > 0 && b.bytes > l.MaxBytes {
		return errdefs.WithKind(fmt.Errorf("the image file is larger than %d bytes (images.max_image_bytes)", l.MaxBytes), errdefs.ErrResourceExhausted)
	}
	if b.limits.MinFreeBytes > 0 && (first || b.sinceCheck >= freeCheckEvery) {
		b.sinceCheck = 0
		return b.checkFree(freeCheckEvery)
	}
	return nil
}
