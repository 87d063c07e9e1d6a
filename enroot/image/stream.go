package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// squashStreamArgs is the mksquashfs command line that reads a tar stream on stdin and
// writes out. The root directory is root's and 0755, as a directory the store made.
// Ownership is kept (unlike `enroot import`, which runs unprivileged and uses
// -all-root) because pods run as the users their image's files belong to.
func squashStreamArgs(out, options string) []string {
	args := []string{"-", out, "-tar", "-noappend", "-no-progress", "-root-mode", "0755", "-root-uid", "0", "-root-gid", "0"}
	return append(args, strings.Fields(options)...)
}

// pipeSize is the capacity asked for the pipe into mksquashfs (the default most that
// /proc/sys/fs/pipe-max-size lets a process ask).
const pipeSize = 1 << 20

// layerSource opens layer i's tar stream for the second read.
type layerSource func(i int) (io.ReadCloser, error)

// streamSquashfs writes the planned image to out: the surviving entries of every layer,
// in layer order, with their final names, then the implicit directories and the hard
// links, into mksquashfs's standard input. free, when set, accounts the bytes written.
func streamSquashfs(ctx context.Context, p *plan, layers int, open layerSource, out, options string, free *budget) error {
	cmd := exec.CommandContext(ctx, "mksquashfs", squashStreamArgs(out, options)...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	// A pipe holds 64 KiB by default: a writer and a reader taking turns every 64 KiB
	// spend more time switching than copying.
	_, _ = unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, pipeSize)
	cmd.Stdin = pr
	err = cmd.Start()
	pr.Close()
	if err != nil {
		pw.Close()
		return fmt.Errorf("mksquashfs: %w", err)
	}
	werr := writeMerged(p, layers, open, pw, free)
	if cerr := pw.Close(); werr == nil {
		werr = cerr
	}
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("mksquashfs (options %q): %w: %s", options, err, lastLines(output.String()))
	}
	return werr
}

// writeMerged writes the planned entries as one tar stream to w.
func writeMerged(p *plan, layers int, open layerSource, w io.Writer, free *budget) error {
	bw := bufio.NewWriterSize(countingWriter{w, free}, 1<<20)
	tw := tar.NewWriter(bw)
	for i := range layers {
		if err := writeLayer(tw, p, i, open); err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	now := time.Now()
	for _, d := range p.implicit {
		if err := tw.WriteHeader(&tar.Header{Name: d.path() + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: now}); err != nil {
			return err
		}
	}
	for _, l := range p.links {
		hdr := &tar.Header{Name: l.path(), Typeflag: tar.TypeLink, Linkname: l.ino.primary.path(), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// writeLayer copies the entries of layer i the plan keeps.
func writeLayer(tw *tar.Writer, p *plan, i int, open layerSource) error {
	rc, err := open(i)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for seq := 0; ; seq++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer tar: %w", err)
		}
		n := p.emit[entryRef{i, seq}]
		if n == nil {
			continue
		}
		out, err := streamHeader(n, hdr)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(out); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if out.Typeflag == tar.TypeReg {
			// The size was counted against the pull's limits when the layer was indexed.
			if _, err := io.CopyN(tw, tr, out.Size); err != nil {
				return fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
		}
	}
}

// streamHeader is the header an entry is written with: its final name, type, owner,
// permissions, time and extended attributes of the namespaces squashfs keeps, and
// nothing else the image's tar carried (user and group names, which a tar reader could
// map through the host's passwd; other PAX records).
func streamHeader(n *mnode, in *tar.Header) (*tar.Header, error) {
	out := &tar.Header{Name: n.path(), Uid: in.Uid, Gid: in.Gid, Mode: in.Mode & 0o7777, ModTime: in.ModTime}
	switch {
	case n.isDir():
		if in.Typeflag != tar.TypeDir {
			return nil, fmt.Errorf("entry %q changed between reads of the layer", in.Name)
		}
		out.Typeflag, out.Name = tar.TypeDir, out.Name+"/"
	case in.Typeflag == n.ino.typeflag || (in.Typeflag == tar.TypeGNUSparse && n.ino.typeflag == tar.TypeReg):
		out.Typeflag = n.ino.typeflag
		switch out.Typeflag {
		case tar.TypeReg:
			out.Size = in.Size
		case tar.TypeSymlink:
			out.Linkname = in.Linkname
		}
	default:
		return nil, fmt.Errorf("entry %q changed between reads of the layer", in.Name)
	}
	for key, value := range in.PAXRecords {
		attr, ok := strings.CutPrefix(key, "SCHILY.xattr.")
		if ok && (strings.HasPrefix(attr, "user.") || strings.HasPrefix(attr, "trusted.") || strings.HasPrefix(attr, "security.")) {
			if out.PAXRecords == nil {
				out.PAXRecords = map[string]string{}
			}
			out.PAXRecords[key] = value
		}
	}
	return out, nil
}

// countingWriter accounts what passes through it against a budget's free-space bound.
type countingWriter struct {
	w io.Writer
	b *budget
}

func (c countingWriter) Write(p []byte) (int, error) {
	if c.b != nil {
		if err := c.b.addBytes(int64(len(p))); err != nil {
			return 0, err
		}
	}
	return c.w.Write(p)
}
