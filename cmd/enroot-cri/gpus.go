package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/cri/imagesocket"
	"github.com/enroot-cri/enroot-cri/ledger"
	"github.com/enroot-cri/enroot-cri/mig"
)

// loadConfig parses --config for the commands other than serve.
func loadConfig(name string, args []string, stderr io.Writer, flags func(*flag.FlagSet)) (config.Config, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "configuration file")
	if flags != nil {
		flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return config.Config{}, false
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err := config.Load(*path, explicit)
	if err != nil {
		fmt.Fprintf(stderr, "enroot-cri: %v\n", err)
		return config.Config{}, false
	}
	return cfg, true
}

// gpus prints the inventory and the ledger.
func gpus(args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	cfg, ok := loadConfig("gpus", args, stderr, func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") })
	if !ok {
		return 2
	}
	inv := mig.ReadInventory(context.Background(), cfg.NVMLHelperPath())
	claims, err := (&ledger.Ledger{Path: cfg.LedgerPath()}).Read()
	if err != nil {
		fmt.Fprintf(stderr, "enroot-cri: %v\n", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Inventory mig.Inventory  `json:"inventory"`
			Ledger    *ledger.Claims `json:"ledger"`
		}{inv, claims})
		return 0
	}
	if inv.Unavailable != "" {
		fmt.Fprintf(stdout, "No GPUs: %s\n", inv.Unavailable)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if len(inv.GPUs) > 0 {
		fmt.Fprintf(w, "GPU\tUUID\tNAME\tMEMORY\tMIG\tHELD BY\n")
	}
	holder := func(uuid string) string {
		if h, ok := claims.Devices[uuid]; ok {
			return h.String()
		}
		return "-"
	}
	for _, g := range inv.GPUs {
		mode := "off"
		if g.MIGCurrent {
			mode = "on"
		}
		if g.MIGPending != g.MIGCurrent {
			mode += " (pending change)"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%d MiB\t%s\t%s\n", g.Index, g.UUID, g.Name, g.MemoryMiB, mode, holder(g.UUID))
		for i, s := range g.Slices {
			fmt.Fprintf(w, "  %d:%d\t%s\t%s (GI %d, CI %d)\t%d MiB\t\t%s\n", g.Index, i, s.UUID, s.Profile, s.GI, s.CI, s.MemoryMiB, holder(s.UUID))
		}
	}
	_ = w.Flush()
	if len(claims.CPUs) > 0 {
		var jobs []string
		for job, cpus := range claims.CPUs {
			jobs = append(jobs, fmt.Sprintf("Slurm job %s holds CPUs %v", job, cpus))
		}
		sort.Strings(jobs)
		fmt.Fprintln(stdout, strings.Join(jobs, "\n"))
	}
	if inv.Driver != "" {
		fmt.Fprintf(stdout, "Driver %s; ledger %s\n", inv.Driver, cfg.LedgerPath())
	}
	return 0
}

// slurm is `enroot-cri slurm prolog|epilog`, run by slurmd as Prolog and Epilog.
func slurm(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "prolog" && args[0] != "epilog") {
		fmt.Fprintln(stderr, "usage: enroot-cri slurm prolog|epilog [--config FILE] (slurmd's Prolog= and Epilog=)")
		return 2
	}
	cfg, ok := loadConfig("slurm "+args[0], args[1:], stderr, nil)
	if !ok {
		return 2
	}
	hooks := mig.JobHooks{
		Ledger:     &ledger.Ledger{Path: cfg.LedgerPath()},
		Getenv:     os.Getenv,
		Inventory:  func() mig.Inventory { return mig.ReadInventory(context.Background(), cfg.NVMLHelperPath()) },
		CgroupRoot: "/sys/fs/cgroup",
		AskCPUs:    askSlurmctldCPUs,
		Strict:     cfg.GPUs.PrologStrict,
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "enroot-cri slurm %s: %v\n", args[0], err)
		return hooks.ExitCode(err)
	}
	if args[0] == "epilog" {
		id, freed, err := hooks.Epilog()
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "Slurm job %s released %d GPU(s) %s\n", id, len(freed), strings.Join(freed, ","))
		releaseJobImages(cfg, id, stdout, stderr)
		return 0
	}
	msg, err := hooks.Prolog()
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(stdout, msg)
	return 0
}

// askSlurmctldCPUs asks slurmctld for a job's CPUs on this node, for a prolog that runs
// before the job's cgroup exists.
func askSlurmctldCPUs(job string) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, scontrol(), "show", "job", "-d", job).Output()
	if err != nil {
		return nil, err
	}
	return mig.ScontrolCPUs(string(out), os.Getenv("SLURMD_NODENAME"))
}

// releaseJobImages ends the holds a job's steps still have on images (a step killed
// before pyxis ran the importer's release). The daemon being down is not the job's
// failure: its holds are released when it next sees an epilog, or by hand.
func releaseJobImages(cfg config.Config, job string, stdout, stderr io.Writer) {
	uidText := os.Getenv("SLURM_JOB_UID")
	uid, err := strconv.ParseUint(uidText, 10, 32)
	if err != nil {
		fmt.Fprintf(stderr, "enroot-cri slurm epilog: SLURM_JOB_UID %q is not a uid; image holds of job %s stay\n", uidText, job)
		return
	}
	u := uint32(uid)
	r, err := imagesocket.Call(cfg.ImageSocket(), imagesocket.Request{Op: imagesocket.OpRelease, Job: job, UID: &u}, nil, nil)
	if err != nil {
		fmt.Fprintf(stderr, "enroot-cri slurm epilog: release the images of job %s: %v\n", job, err)
		return
	}
	if r.Released > 0 {
		fmt.Fprintf(stdout, "Slurm job %s released %d image hold(s)\n", job, r.Released)
	}
}

// scontrol finds Slurm's scontrol; slurmd runs the prolog without a PATH.
func scontrol() string {
	if p, err := exec.LookPath("scontrol"); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/bin", "/usr/local/bin", "/opt/slurm/bin"} {
		if p := filepath.Join(dir, "scontrol"); fileExists(p) {
			return p
		}
	}
	return "scontrol"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
