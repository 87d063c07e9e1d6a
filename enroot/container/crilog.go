package container

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
	"time"
)

// maxLogLine is the longest log line the CRI format carries in one record; longer
// lines are split into partial (P) records.
const maxLogLine = 16 << 10

// Stream names of the CRI log format.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// flushAt is how many bytes of records the writer gathers before it writes them even
// while more output is waiting to be read.
const flushAt = 64 << 10

// logWriter serialises CRI log records from several streams into one file. Records are
// gathered while their stream has more output waiting and written when it has none (or
// flushAt bytes are pending), so a flood costs a write per pipe read, not per line,
// and a quiet stream's last line is never held back.
type logWriter struct {
	mu      sync.Mutex
	out     io.Writer
	now     func() time.Time
	pending []byte
}

// swap makes w write to out from now on and closes the previous file, after writing
// to it what was pending.
func (w *logWriter) swap(out io.WriteCloser) {
	w.mu.Lock()
	_ = w.flushLocked()
	old := w.out
	w.out = out
	w.mu.Unlock()
	if c, ok := old.(io.Closer); ok {
		_ = c.Close()
	}
}

func (w *logWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.flushLocked()
	if c, ok := w.out.(io.Closer); ok {
		return errors.Join(err, c.Close())
	}
	return err
}

// record adds one record, "<RFC3339Nano> <stream> <P|F> <text>\n", and writes what is
// pending if flush is set or enough has gathered.
func (w *logWriter) record(stream string, partial bool, text []byte, flush bool) error {
	tag := " F "
	if partial {
		tag = " P "
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.now().UTC().AppendFormat(w.pending, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, stream...)
	b = append(b, tag...)
	b = append(b, text...)
	w.pending = append(b, '\n')
	if flush || len(w.pending) >= flushAt {
		return w.flushLocked()
	}
	return nil
}

func (w *logWriter) flushLocked() error {
	if len(w.pending) == 0 {
		return nil
	}
	_, err := w.out.Write(w.pending)
	w.pending = w.pending[:0]
	return err
}

// copyStream turns r's output into CRI log records until r ends. A line longer than
// maxLogLine becomes partial records followed by a full one; a last line without a
// newline is a partial record, as containerd writes it, so that readers (the kubelet's
// termination message from the log, `kubectl logs`) show no newline the command did
// not print. "\r\n" ends a line as "\n" does. Records are written before a read that
// could wait for more output.
func (w *logWriter) copyStream(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		partial := true
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			// A "\r\n" across the split: the "\r" goes with the rest of the line.
			if line[len(line)-1] == '\r' {
				_ = br.UnreadByte()
				line = line[:len(line)-1]
			}
			err = nil
		case err == nil:
			partial = false
			line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		}
		if len(line) > 0 || !partial {
			if werr := w.record(stream, partial, line, err != nil || br.Buffered() == 0); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			w.mu.Lock()
			werr := w.flushLocked()
			w.mu.Unlock()
			return werr
		}
		if err != nil {
			return err
		}
	}
}
