package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// maxEnrootFile bounds what is read of one of an Enroot image's configuration files.
const maxEnrootFile = 1 << 20

// enrootFileNames are the files an Enroot image keeps its configuration in.
var enrootFileNames = []string{"etc/environment", "etc/fstab", "etc/rc", "etc/rc.local"}

// checkSquashfs checks that f starts like a squashfs file (its magic, "hsqs").
func checkSquashfs(f *os.File) error {
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, 0); err != nil {
		return fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if string(magic) != "hsqs" {
		return fmt.Errorf("%s is not a squashfs file (it does not start with the squashfs magic)", f.Name())
	}
	return nil
}

// readEnrootFiles reads the Enroot configuration files of a squashfs image, without
// mounting or unpacking it; an absent file is left out of the result.
func readEnrootFiles(ctx context.Context, sqsh string) (map[string]string, error) {
	files := map[string]string{}
	for _, name := range enrootFileNames {
		data, found, err := catSquashfs(ctx, sqsh, name)
		if err != nil {
			return nil, err
		}
		if found {
			files[name] = data
		}
	}
	return files, nil
}

// catSquashfs returns one regular file of a squashfs image (unsquashfs -cat), at most
// maxEnrootFile bytes of it.
func catSquashfs(ctx context.Context, sqsh, name string) (string, bool, error) {
	cmd := exec.CommandContext(ctx, "unsquashfs", "-cat", sqsh, name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", false, err
	}
	if err := cmd.Start(); err != nil {
		return "", false, fmt.Errorf("unsquashfs: %w", err)
	}
	data, rerr := io.ReadAll(io.LimitReader(out, maxEnrootFile+1))
	if len(data) > maxEnrootFile {
		_ = cmd.Process.Kill()
	}
	werr := cmd.Wait()
	switch {
	case rerr != nil:
		return "", false, fmt.Errorf("read /%s of %s: %w", name, sqsh, rerr)
	case len(data) > maxEnrootFile:
		return "", false, fmt.Errorf("/%s of %s is larger than %d bytes", name, sqsh, maxEnrootFile)
	case werr != nil:
		// unsquashfs -cat says "no matches" for a missing file and fails on one that is
		// not a regular file; both mean the image has no such configuration file.
		msg := stderr.String()
		if strings.Contains(msg, "no matches for") || strings.Contains(msg, "failed to resolve") || strings.Contains(msg, "is a directory") {
			return "", false, nil
		}
		return "", false, fmt.Errorf("read /%s of %s: unsquashfs: %w: %s", name, sqsh, werr, strings.TrimSpace(msg))
	}
	return string(data), true, nil
}

// squashfsAllRoot says whether every file of a squashfs image belongs to root:root,
// as in a file that `enroot import` wrote (mksquashfs -all-root).
func squashfsAllRoot(ctx context.Context, sqsh string) (bool, error) {
	cmd := exec.CommandContext(ctx, "unsquashfs", "-lln", sqsh)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("unsquashfs: %w", err)
	}
	allRoot := true
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// "-rw-r--r-- 0/0  1234 2024-01-01 00:00 squashfs-root/etc/rc"
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && strings.Contains(f[1], "/") && f[1] != "0/0" {
			allRoot = false
		}
	}
	serr := sc.Err()
	if serr != nil {
		_ = cmd.Process.Kill()
	}
	if err := cmd.Wait(); err != nil {
		return false, fmt.Errorf("list %s: unsquashfs: %w: %s", sqsh, err, strings.TrimSpace(stderr.String()))
	}
	if serr != nil {
		return false, fmt.Errorf("list %s: %w", sqsh, serr)
	}
	return allRoot, nil
}
