// Command enroot-cri-shim is the per-container monitor the daemon starts
// (`enroot-cri-shim shim BUNDLE`): a small binary holding only what a monitor runs, so
// that the process that outlives the daemon for every container costs a few MB, not
// the whole daemon. It also runs the user namespace anchor it starts itself while it
// ID-maps a root. The container's init still starts from the daemon's sealed binary.
package main

import (
	"fmt"
	"os"

	"github.com/enroot-cri/enroot-cri/enroot/container"
)

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "shim":
		err = container.RunShim(os.Args[2])
	case len(os.Args) == 2 && os.Args[1] == "userns-anchor":
		err = container.RunUsernsAnchor()
	default:
		fmt.Fprintln(os.Stderr, "usage: enroot-cri-shim shim BUNDLE (started by enroot-cri serve, not by hand)")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "enroot-cri-shim %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
