//go:build cgo

// Command enroot-cri-nvml prints the node's GPUs and MIG devices from NVML as JSON.
// It is the part of enroot-cri that needs cgo (go-nvml loads libnvidia-ml.so.1), so
// the static daemon runs it instead of linking NVML; on a node without the library it
// prints an empty inventory that says why.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/enroot-cri/enroot-cri/mig"
	"github.com/enroot-cri/enroot-cri/mig/nvmlinv"
)

// fake, set in builds with the fakenvml tag, returns one of go-nvml's fake machines.
var fake func(machine string) (nvml.Interface, error)

func main() {
	machine := flag.String("fake", "", "use go-nvml's fake machine (dgxa100, dgxh100, dgxh200); test builds only")
	flag.Parse()
	var inv mig.Inventory
	switch {
	case *machine == "":
		inv = nvmlinv.Load()
	case fake == nil:
		fmt.Fprintln(os.Stderr, "enroot-cri-nvml: this build has no fake machines (build with -tags fakenvml)")
		os.Exit(2)
	default:
		lib, err := fake(*machine)
		if err != nil {
			fmt.Fprintln(os.Stderr, "enroot-cri-nvml:", err)
			os.Exit(2)
		}
		if inv, err = nvmlinv.Discover(lib); err != nil {
			fmt.Fprintln(os.Stderr, "enroot-cri-nvml:", err)
			os.Exit(1)
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(inv); err != nil {
		os.Exit(1)
	}
}
