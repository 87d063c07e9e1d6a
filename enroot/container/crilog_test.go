package container

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCopyStreamWritesCRIRecords(t *testing.T) {
	var out bytes.Buffer
	w := &logWriter{out: &out, now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC) }}
	long := strings.Repeat("a", maxLogLine+10)
	require.NoError(t, w.copyStream(Stdout, strings.NewReader("hello\n\nworld\n"+long+"\nno newline")))
	ts := "2026-01-02T03:04:05.000000006Z"
	assert.Equal(t, ts+" stdout F hello\n"+
		ts+" stdout F \n"+
		ts+" stdout F world\n"+
		ts+" stdout P "+strings.Repeat("a", maxLogLine)+"\n"+
		ts+" stdout F "+strings.Repeat("a", 10)+"\n"+
		ts+" stdout F no newline\n", out.String())
}

func TestCopyStreamEmpty(t *testing.T) {
	var out bytes.Buffer
	w := &logWriter{out: &out, now: time.Now}
	require.NoError(t, w.copyStream(Stderr, strings.NewReader("")))
	assert.Empty(t, out.String())
}
