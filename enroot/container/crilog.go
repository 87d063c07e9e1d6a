package container

import (
	"bufio"
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

// logWriter serialises CRI log records from several streams into one file.
type logWriter struct {
	mu  sync.Mutex
	out io.Writer
	now func() time.Time
}

// swap makes w write to out from now on and closes the previous file.
func (w *logWriter) swap(out io.WriteCloser) {
	w.mu.Lock()
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
	if c, ok := w.out.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// record writes one record: "<RFC3339Nano> <stream> <P|F> <text>\n".
func (w *logWriter) record(stream string, partial bool, text []byte) error {
	tag := "F"
	if partial {
		tag = "P"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := make([]byte, 0, len(text)+64)
	buf = w.now().UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, stream...)
	buf = append(buf, ' ')
	buf = append(buf, tag...)
	buf = append(buf, ' ')
	buf = append(buf, text...)
	buf = append(buf, '\n')
	_, err := w.out.Write(buf)
	return err
}

// copyStream turns r's output into CRI log records until r ends. A line longer than
// maxLogLine becomes partial records followed by a full one; a last line without a
// newline is written as a full record, as containerd does.
func (w *logWriter) copyStream(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 || (err == nil && !isPrefix) {
			if werr := w.record(stream, isPrefix, line); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
