package pidwatch

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrGone is returned by Add when the process has already ended (or its PID now
// names another process).
var ErrGone = errors.New("process has ended")

// Watcher calls a function with a key when the process watched under that key ends.
type Watcher struct {
	epfd int
	mu   sync.Mutex
	keys map[int32]string // pidfd -> key
	fds  map[string]int   // key -> pidfd
}

// New creates a watcher; Run delivers its events.
func New() (*Watcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create epoll set: %w", err)
	}
	return &Watcher{epfd: epfd, keys: map[int32]string{}, fds: map[string]int{}}, nil
}

// Add watches pid under key, replacing what key watched. same is called once the
// pidfd is open and tells whether pid is still the expected process (a PID read from a
// file may have been reused); when it is not, Add returns ErrGone.
func (w *Watcher) Add(key string, pid int, same func() bool) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	if err != nil {
		return fmt.Errorf("open pidfd of %d: %w", pid, err)
	}
	if !same() {
		unix.Close(fd)
		return ErrGone
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(key)
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return fmt.Errorf("watch pidfd of %d: %w", pid, err)
	}
	w.keys[int32(fd)], w.fds[key] = key, fd
	return nil
}

// Remove stops watching key.
func (w *Watcher) Remove(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeLocked(key)
}

func (w *Watcher) removeLocked(key string) {
	fd, ok := w.fds[key]
	if !ok {
		return
	}
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	unix.Close(fd)
	delete(w.fds, key)
	delete(w.keys, int32(fd))
}

// Len is how many processes are watched.
func (w *Watcher) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.fds)
}

// Run calls ended with the key of each watched process that ends (once; the key is
// then no longer watched) until ctx ends, and then closes the watcher.
func (w *Watcher) Run(ctx context.Context, ended func(key string)) {
	defer w.close()
	events := make([]unix.EpollEvent, 64)
	for ctx.Err() == nil {
		n, err := unix.EpollWait(w.epfd, events, 500) // wakes to see ctx end
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range events[:n] {
			w.mu.Lock()
			key, ok := w.keys[ev.Fd]
			if ok {
				w.removeLocked(key)
			}
			w.mu.Unlock()
			if ok {
				ended(key)
			}
		}
	}
}

func (w *Watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key := range w.fds {
		w.removeLocked(key)
	}
	unix.Close(w.epfd)
}
