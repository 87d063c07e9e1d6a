package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/enroot-cri/enroot-cri/config"
	"github.com/enroot-cri/enroot-cri/cri/imagesocket"
	"github.com/enroot-cri/enroot-cri/enroot"
	"github.com/enroot-cri/enroot-cri/errdefs"
)

// images is `enroot-cri images import|holds`, which talk to the daemon's image socket.
func images(args []string, stdout, stderr io.Writer) int {
	const use = "usage: enroot-cri images import [--config FILE] FILE.sqsh NAME[:TAG]\n" +
		"       enroot-cri images holds [--config FILE]"
	if len(args) == 0 || (args[0] != "import" && args[0] != "holds") {
		fmt.Fprintln(stderr, use)
		return 2
	}
	var rest []string
	cfg, ok := loadConfigArgs("images "+args[0], args[1:], stderr, &rest)
	if !ok {
		return 2
	}
	switch args[0] {
	case "import":
		if len(rest) != 2 {
			fmt.Fprintln(stderr, use)
			return 2
		}
		f, err := os.Open(rest[0])
		if err != nil {
			fmt.Fprintf(stderr, "enroot-cri images import: %v\n", err)
			return 1
		}
		defer f.Close()
		r, err := imagesocket.Call(cfg.ImageSocket(), imagesocket.Request{Op: imagesocket.OpImport, Name: rest[1]}, f, nil)
		if err != nil {
			fmt.Fprintf(stderr, "enroot-cri images import: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "Imported %s as %s\n", rest[0], strings.Join(r.Names, ", "))
		fmt.Fprintln(stdout, r.Image)
		return 0
	default:
		if len(rest) != 0 {
			fmt.Fprintln(stderr, use)
			return 2
		}
		r, err := imagesocket.Call(cfg.ImageSocket(), imagesocket.Request{Op: imagesocket.OpHolds}, nil, nil)
		if err != nil {
			fmt.Fprintf(stderr, "enroot-cri images holds: %v\n", err)
			return 1
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "UID\tJOB\tSTEP\tIMAGE\tPATH\n")
		for _, h := range r.Holds {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", h.UID, h.Job, h.Step, h.Image, h.Path)
		}
		_ = w.Flush()
		return 0
	}
}

// pyxisImporter is a pyxis importer (pyxis 0.21+, plugstack.conf importer=) backed
// by the daemon's image store: `get URI` prints the path of the image for this job
// step, `release` ends the step's hold. pyxis runs it as the job's user with the job's
// environment.
func pyxisImporter(args []string, stdout, stderr io.Writer) int {
	const use = "usage: enroot-cri pyxis-importer [--config FILE] get URI | release\n" +
		"(pyxis runs it: plugstack.conf importer=/usr/libexec/enroot-cri/pyxis-importer)"
	var rest []string
	cfg, ok := loadConfigArgs("pyxis-importer", args, stderr, &rest)
	if !ok {
		return 2
	}
	valid := len(rest) == 2 && rest[0] == "get" || len(rest) == 1 && rest[0] == "release"
	if !valid {
		fmt.Fprintln(stderr, use)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "enroot-cri pyxis-importer %s: %v\n", rest[0], err)
		return 1
	}
	job, step := os.Getenv("SLURM_JOB_ID"), os.Getenv("SLURM_STEP_ID")
	if job == "" || step == "" {
		return fail(fmt.Errorf("SLURM_JOB_ID and SLURM_STEP_ID must be set (pyxis sets them when it runs the importer)"))
	}
	if rest[0] == "release" {
		_, err := imagesocket.Call(cfg.ImageSocket(), imagesocket.Request{Op: imagesocket.OpRelease, Job: job, Step: step}, nil, nil)
		if err != nil {
			return fail(err)
		}
		return 0
	}
	uri, err := enroot.ParseURI(rest[1])
	if err != nil {
		return fail(err)
	}
	req := imagesocket.Request{Op: imagesocket.OpGet, URI: rest[1], Job: job, Step: step}
	// The credentials `enroot import` would use, read as this user from this user's
	// own Enroot credentials file.
	settings, err := enroot.LoadSettings(cfg.Enroot.ConfigDir, os.Environ())
	if err != nil {
		return fail(err)
	}
	file := enroot.CredentialsFile(enroot.ConfigPath(settings, os.LookupEnv))
	cred, found, err := enroot.LookupCredential(context.Background(), file, uri.Registry, uri.User)
	if err != nil {
		return fail(err)
	}
	if found {
		req.Username, req.Password = cred.Login, cred.Password
		fmt.Fprintf(stderr, "Using credentials of %s for %s from %s\n", cred.Login, uri.Registry, file)
	}
	r, err := imagesocket.Call(cfg.ImageSocket(), req, nil, func(p string) { fmt.Fprintln(stderr, p) })
	if errors.Is(err, errdefs.ErrPermissionDenied) && !found {
		return fail(fmt.Errorf("%w\n(no credentials for %s in %s; Enroot's form: machine HOST login USER password PASSWORD)", err, uri.Registry, file))
	}
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stderr, "Image %s from enroot-cri's store\n", r.Image)
	fmt.Fprintln(stdout, r.Path)
	return 0
}

// loadConfigArgs is loadConfig that also returns the arguments after the flags.
func loadConfigArgs(name string, args []string, stderr io.Writer, rest *[]string) (config.Config, bool) {
	var fs *flag.FlagSet
	cfg, ok := loadConfig(name, args, stderr, func(f *flag.FlagSet) { fs = f })
	if ok {
		*rest = fs.Args()
	}
	return cfg, ok
}
