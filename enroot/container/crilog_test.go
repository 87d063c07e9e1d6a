package container

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCopyStreamWritesCRIRecords(t *testing.T) {
	var out bytes.Buffer
	w := &logWriter{out: &out, now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC) }}
	long := strings.Repeat("a", maxLogLine+10)
	require.NoError(t, w.copyStream(Stdout, strings.NewReader("hello\n\nworld\n"+long+"\r\ncrlf\r\n\nno newline")))
	ts := "2026-01-02T03:04:05.000000006Z"
	assert.Equal(t, ts+" stdout F hello\n"+
		ts+" stdout F \n"+
		ts+" stdout F world\n"+
		ts+" stdout P "+strings.Repeat("a", maxLogLine)+"\n"+
		ts+" stdout F "+strings.Repeat("a", 10)+"\n"+
		ts+" stdout F crlf\n"+
		ts+" stdout F \n"+
		ts+" stdout P no newline\n", out.String(), "a last line without a newline is partial, as containerd writes it")
}

func TestCopyStreamEmpty(t *testing.T) {
	var out bytes.Buffer
	w := &logWriter{out: &out, now: time.Now}
	require.NoError(t, w.copyStream(Stderr, strings.NewReader("")))
	assert.Empty(t, out.String())
}

// countingWriter counts the writes made to it, safe for the copy goroutine and the test.
type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func (c *countingWriter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func TestAFloodIsWrittenInFewWrites(t *testing.T) {
	out := &countingWriter{}
	w := &logWriter{out: out, now: time.Now}
	const lines = 10000
	require.NoError(t, w.copyStream(Stdout, strings.NewReader(strings.Repeat(strings.Repeat("x", 99)+"\n", lines))))
	assert.Equal(t, lines, strings.Count(out.String(), " stdout F "+strings.Repeat("x", 99)+"\n"))
	// 1 MB of records in 64 KiB writes, not one write per line.
	assert.Less(t, out.writes, lines/100)
}

func TestALineIsWrittenBeforeTheStreamWaits(t *testing.T) {
	out := &countingWriter{}
	w := &logWriter{out: out, now: time.Now}
	r, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- w.copyStream(Stderr, r) }()
	_, err := pw.Write([]byte("first\nsecond\n"))
	require.NoError(t, err)
	// Nothing more comes: both records must reach the file while the copy waits.
	require.Eventually(t, func() bool { return strings.Count(out.String(), " stderr F ") == 2 }, 5*time.Second, 5*time.Millisecond)
	_, err = pw.Write([]byte("partial"))
	require.NoError(t, err)
	require.NoError(t, pw.Close())
	require.NoError(t, <-done)
	assert.Contains(t, out.String(), " stderr P partial\n", "the last line has no newline")
}

type closingBuffer struct {
	countingWriter
	closed bool
}

func (c *closingBuffer) Close() error { c.closed = true; return nil }

func TestSwapWritesWhatIsPendingToTheOldFile(t *testing.T) {
	old, next := &closingBuffer{}, &closingBuffer{}
	w := &logWriter{out: old, now: time.Now}
	require.NoError(t, w.record(Stdout, false, []byte("before"), false))
	assert.Empty(t, old.String(), "gathered, not yet written")
	w.swap(next)
	assert.True(t, old.closed)
	assert.Contains(t, old.String(), " stdout F before\n")
	require.NoError(t, w.record(Stdout, false, []byte("after"), false))
	require.NoError(t, w.close())
	assert.True(t, next.closed)
	assert.Equal(t, 1, strings.Count(next.String(), "after"))
	assert.NotContains(t, next.String(), "before")
}
