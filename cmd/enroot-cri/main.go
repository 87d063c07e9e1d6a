// Command enroot-cri is a CRI runtime that runs Kubernetes pods the way Slurm runs
// job steps under pyxis and Enroot.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/cri/daemon"
	"github.com/enroot-cri/enroot-cri/cri/doctor"
	"github.com/enroot-cri/enroot-cri/enroot/container"
	"github.com/enroot-cri/enroot-cri/enroot/sandbox"
	"github.com/enroot-cri/enroot-cri/internal/logging"
	"github.com/enroot-cri/enroot-cri/internal/version"
)

const usage = `usage: enroot-cri COMMAND [OPTIONS]

Commands:
  serve [--config FILE]   run the CRI daemon (default configuration: %s;
                          a missing default file means built-in defaults)
  config                  print the default configuration (commented TOML)
  doctor [--config FILE]  check that this node can run pods; one line per check, with
                          what to do when it fails; exits 1 when it cannot
  gpus [--json] [--config FILE]
                          print the node's GPUs and MIG slices (from NVML, through
                          enroot-cri-nvml) and who holds each in the node ledger
  slurm prolog|epilog [--config FILE]
                          claim or release a Slurm job's GPUs and CPUs in the ledger
                          (slurm.conf: Prolog= and Epilog= scripts that run these)
  images import [--config FILE] FILE.sqsh NAME[:TAG]
                          make an image of a squashfs file that enroot import or
                          enroot export wrote (root; the daemon must be running)
  images holds [--config FILE]
                          list the images Slurm job steps hold through the importer
  pyxis-importer [--config FILE] get URI | release
                          pyxis's importer (plugstack.conf importer=): jobs run the
                          daemon's images, pulled once for pods and jobs
  version                 print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, config.DefaultPath)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "config":
		fmt.Fprint(stdout, config.DefaultTOML)
		return 0
	case "doctor":
		cfg, ok := loadConfig("doctor", args[1:], stderr, nil)
		if !ok {
			return 2
		}
		if !doctor.Print(stdout, doctor.Run(context.Background(), cfg, doctor.DefaultHost())) {
			return 1
		}
		return 0
	case "gpus":
		return gpus(args[1:], stdout, stderr)
	case "slurm":
		return slurm(args[1:], stdout, stderr)
	case "images":
		return images(args[1:], stdout, stderr)
	case "pyxis-importer":
		return pyxisImporter(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "%s %s (CRI %s, %s)\n", version.RuntimeName, version.Semantic(), version.CRIAPIVersion, runtime.Version())
		return 0
	case "shim": // internal: the per-container monitor the daemon starts
		return internal(args, container.RunShim, stderr)
	case "init": // internal: a container's first process, started by its shim
		// Its stderr is the container's: failures go to the shim, not into the log.
		return internalNoArg(args, container.RunInit, io.Discard)
	case "exec-helper": // internal: the host side of an exec, started by the daemon
		return internalNoArg(args, container.RunExecHelper, stderr)
	case "exec-stage": // internal: the in-container side of an exec
		return internalNoArg(args, container.RunExecStage, stderr)
	case "userns-anchor": // internal: holds a user namespace open while a root is ID-mapped
		return internalNoArg(args, container.RunUsernsAnchor, stderr)
	case "pod-holder": // internal: PID 1 of a pod's shared PID namespace
		return internal(args, func(string) error { return sandbox.RunHolder() }, stderr)
	case "help", "-h", "--help":
		fmt.Fprintf(stdout, usage, config.DefaultPath)
		return 0
	default:
		fmt.Fprintf(stderr, "enroot-cri: unknown command %q\n"+usage, args[0], config.DefaultPath)
		return 2
	}
}

func internal(args []string, run func(string) error, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintf(stderr, "usage: enroot-cri %s BUNDLE (started by enroot-cri serve, not by hand)\n", args[0])
		return 2
	}
	if err := run(args[1]); err != nil {
		fmt.Fprintf(stderr, "enroot-cri %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func internalNoArg(args []string, run func() error, stderr io.Writer) int {
	if err := run(); err != nil {
		fmt.Fprintf(stderr, "enroot-cri %s: %v\n", args[0], err)
		return 126
	}
	return 0
}

func serve(args []string, stderr io.Writer) int {
	// Descriptors the daemon was started with (a careless service manager or shell)
	// must reach no shim and no container: the daemon's children get only what it
	// passes them.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fmt.Fprintf(stderr, "enroot-cri: close inherited descriptors: %v\n", err)
		return 1
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err := config.Load(*path, explicit)
	if err != nil {
		fmt.Fprintf(stderr, "enroot-cri: %v\n", err)
		return 1
	}
	log, err := logging.New(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(stderr, "enroot-cri: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := daemon.Run(ctx, cfg, log, nil); err != nil {
		log.Error("enroot-cri exits", "error", err)
		return 1
	}
	return 0
}
