// Command testregistry serves small images built from this machine's busybox from a
// registry on 127.0.0.1, for the README demo and manual checks with crictl. It prints
// "ready HOST:PORT" once the images are pushed and serves until SIGTERM or SIGINT.
//
//	testregistry --addr 127.0.0.1:5000 demo/hello:1.0 library/busybox:latest
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/enroot-cri/enroot-cri/internal/testregistry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (loopback)")
	flag.Parse()
	names := flag.Args()
	if len(names) == 0 {
		names = []string{"demo/hello:1.0"}
	}
	if err := serve(*addr, names); err != nil {
		fmt.Fprintf(os.Stderr, "testregistry: %v\n", err)
		os.Exit(1)
	}
}

func serve(addr string, names []string) error {
	entries, err := testregistry.BusyboxEntries()
	if err != nil {
		return err
	}
	layer, err := testregistry.Layer(entries, testregistry.Gzip, true)
	if err != nil {
		return err
	}
	img, err := testregistry.Image(v1.Config{
		Env:        []string{"PATH=/bin", "GREETING=hello from an Enroot squashfs image"},
		Cmd:        []string{"/bin/sh", "-c", "echo \"$GREETING\"; id; hostname"},
		WorkingDir: "/",
		Labels:     map[string]string{"org.opencontainers.image.title": "enroot-cri demo"},
	}, true, layer)
	if err != nil {
		return err
	}
	reg, err := testregistry.Start(testregistry.Options{Addr: addr})
	if err != nil {
		return err
	}
	defer reg.Close()
	for _, n := range names {
		if _, err := reg.Push(n, img); err != nil {
			return fmt.Errorf("push %s: %w", n, err)
		}
	}
	fmt.Printf("ready %s\n", reg.Host)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
