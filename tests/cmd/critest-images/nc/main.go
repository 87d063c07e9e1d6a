// Command nc stands in for the netcat of the Kubernetes test images (Alpine's busybox
// nc), which Debian's busybox builds without UDP. It knows what the node e2e suite
// asks of it: `nc [-v] [-t|-u] [-w SECONDS] HOST PORT`: it sends its input to HOST:PORT
// (one datagram per read with -u) and prints what comes back until the peer closes
// or nothing came for SECONDS (default: no limit for TCP, 1 s for UDP).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	fs := flag.NewFlagSet("nc", flag.ContinueOnError)
	udp := fs.Bool("u", false, "UDP")
	fs.Bool("t", false, "TCP (the default)")
	verbose := fs.Bool("v", false, "say when connected")
	wait := fs.Int("w", 0, "seconds to wait for more output")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: nc [-v] [-t|-u] [-w SECONDS] HOST PORT (this stand-in knows only these)")
		os.Exit(1)
	}
	network := "tcp"
	idle := time.Duration(*wait) * time.Second
	if *udp {
		network = "udp"
		if idle == 0 {
			idle = time.Second
		}
	}
	addr := net.JoinHostPort(fs.Arg(0), fs.Arg(1))
	conn, err := net.DialTimeout(network, addr, max(idle, 5*time.Second))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nc: %v\n", err)
		os.Exit(1)
	}
	defer conn.Close()
	if *verbose {
		fmt.Fprintf(os.Stderr, "Connection to %s %s port [%s/*] succeeded!\n", fs.Arg(0), fs.Arg(1), network)
	}
	sent := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, os.Stdin)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		sent <- err
	}()
	buf := make([]byte, 64<<10)
	for {
		if idle > 0 {
			_ = conn.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := os.Stdout.Write(buf[:n]); werr != nil {
				os.Exit(1)
			}
		}
		var ne net.Error
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.As(err, &ne) && ne.Timeout():
			return
		default:
			fmt.Fprintf(os.Stderr, "nc: %v\n", err)
			os.Exit(1)
		}
	}
}
