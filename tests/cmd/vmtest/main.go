// Command vmtest runs a statically linked Go test binary inside a qemu guest whose
// kernel has only cgroup v2 (cgroup_no_v1=all), and exits with the binary's status.
//
// The guest's initramfs is an uncompressed cpio made here: a static busybox, an init
// script that mounts proc, sys, dev, bpffs and cgroup2 and enables every controller,
// and the test binary. Output comes back on the serial console; the last line the init
// prints carries the exit status. A guest that prints no status within the timeout is
// killed and run once more.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control; done
echo "guest: kernel $(uname -r), cgroup controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
cd /tmp
/test.bin %s
echo "vmtest-exit=$?"
poweroff -f
`

func main() {
	kernel := flag.String("kernel", "", "uncompressed kernel (vmlinux) with a PVH entry")
	busybox := flag.String("busybox", "", "static busybox binary")
	bin := flag.String("test", "", "statically linked test binary")
	args := flag.String("args", "-test.v", "arguments for the test binary")
	timeout := flag.Duration("timeout", 5*time.Minute, "how long one guest may run")
	flag.Parse()
	if *kernel == "" || *busybox == "" || *bin == "" {
		fmt.Fprintln(os.Stderr, "usage: vmtest -kernel vmlinux -busybox busybox -test pkg.test [-args '...']")
		os.Exit(2)
	}
	code, err := run(*kernel, *busybox, *bin, *args, *timeout)
	if errors.Is(err, errHung) {
		fmt.Fprintln(os.Stderr, "vmtest: the guest printed no exit status; running it once more")
		code, err = run(*kernel, *busybox, *bin, *args, *timeout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmtest:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

var errHung = errors.New("guest hung")

var exitLine = regexp.MustCompile(`vmtest-exit=(\d+)`)

func run(kernel, busybox, bin, args string, timeout time.Duration) (int, error) {
	dir, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	initrd := filepath.Join(dir, "initrd.cpio")
	if err := writeInitramfs(initrd, busybox, bin, fmt.Sprintf(initScript, args)); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg,thread=multi", "-cpu", "EPYC", "-m", "1024", "-smp", "2",
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 cgroup_no_v1=all panic=-1 quiet rdinit=/init")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start qemu: %w", err)
	}
	code := -1
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Println(line)
		if m := exitLine.FindStringSubmatch(line); m != nil {
			code, _ = strconv.Atoi(m[1])
		}
	}
	_ = cmd.Wait()
	if code < 0 {
		return 0, errHung
	}
	return code, nil
}

// writeInitramfs writes an uncompressed newc cpio archive.
func writeInitramfs(path, busybox, bin, init string) error {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	test, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	ino := 1
	add := func(name string, mode uint32, data []byte) {
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		buf.WriteString(hdr)
		buf.WriteString(name)
		buf.WriteByte(0)
		pad(&buf)
		buf.Write(data)
		pad(&buf)
	}
	const dir, file = 0o040755, 0o100755
	add("bin", dir, nil)
	add("bin/busybox", file, bb)
	add("init", file, []byte(init))
	add("test.bin", file, test)
	add("TRAILER!!!", 0, nil)
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// pad aligns the archive to four bytes, as newc requires after headers and data.
func pad(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}
