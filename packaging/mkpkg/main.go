// Command mkpkg builds the enroot-cri DEB and RPM packages with nfpm (used as a Go
// library, pinned in go.mod): `make deb rpm` runs it after building the binaries.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/enroot-cri/enroot-cri/config"
)

const description = `Kubernetes container runtime that runs pods as Slurm job steps
 enroot-cri is a per-node CRI server for GPU nodes shared by Slurm and
 Kubernetes. Pods run the way a Slurm step runs under pyxis: the same Enroot
 squashfs images, the same Enroot configuration and hooks, the same Slurm
 cgroup.conf confinement, GPUs and MIG slices bound the same way, and one
 ledger so that slurmd and the kubelet never hand out the same slice twice.`

func main() {
	bin := flag.String("bin", "bin", "directory with enroot-cri, enroot-cri-shim and enroot-cri-nvml")
	out := flag.String("out", "dist", "output directory")
	formats := flag.String("formats", "deb,rpm", "packages to build")
	version := flag.String("version", "", "package version (default: from git describe)")
	flag.Parse()
	if err := run(*bin, *out, strings.Split(*formats, ","), *version); err != nil {
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		os.Exit(1)
	}
}

// packageVersion turns `git describe` into a version both dpkg and rpm order
// correctly: v1.2.3 → 1.2.3, v1.2.3-4-gabc → 1.2.3+git4.abc, no tag → 0.0.0~git<sha>.
func packageVersion() string {
	out, err := exec.Command("git", "describe", "--tags", "--always", "--dirty=.dirty").Output()
	if err != nil {
		return "0.0.0~dev"
	}
	d := strings.TrimSpace(string(out))
	if m := regexp.MustCompile(`^v?(\d+\.\d+\.\d+)(?:-(\d+)-g([0-9a-f]+))?(\.dirty)?$`).FindStringSubmatch(d); m != nil {
		v := m[1]
		if m[2] != "" {
			v += "+git" + m[2] + "." + m[3]
		}
		return v + m[4]
	}
	return "0.0.0~git" + d
}

func run(bin, out string, formats []string, version string) error {
	if version == "" {
		version = packageVersion()
	}
	for _, b := range []string{"enroot-cri", "enroot-cri-shim", "enroot-cri-nvml"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("%w (run make build first)", err)
		}
	}
	stage := filepath.Join(out, "stage")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return err
	}
	// Generated files: the default configuration, the man pages and the Debian
	// changelog, compressed as Debian wants (gzip -9n).
	if err := os.WriteFile(filepath.Join(stage, "config.toml"), []byte(config.DefaultTOML), 0o644); err != nil {
		return err
	}
	now := time.Now().UTC()
	changelog := fmt.Sprintf("enroot-cri (%s) unstable; urgency=medium\n\n  * Package built from the enroot-cri repository.\n\n -- enroot-cri maintainers <enroot-cri@example.org>  %s\n",
		version, now.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	// A native package (no Debian revision): the changelog is changelog.gz.
	for name, data := range map[string][]byte{"changelog.gz": []byte(changelog)} {
		if err := writeGzip(filepath.Join(stage, name), data); err != nil {
			return err
		}
	}
	for _, page := range []string{"enroot-cri.8", "enroot-cri-nvml.8"} {
		data, err := os.ReadFile(filepath.Join("packaging", page))
		if err != nil {
			return err
		}
		if err := writeGzip(filepath.Join(stage, page+".gz"), data); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, format := range formats {
		info := packageInfo(format, version, bin, stage)
		info.MTime = now
		pkgr, err := nfpm.Get(format)
		if err != nil {
			return err
		}
		info = nfpm.WithDefaults(info)
		if err := nfpm.PrepareForPackager(info, format); err != nil {
			return fmt.Errorf("%s: %w", format, err)
		}
		if err := nfpm.Validate(info); err != nil {
			return fmt.Errorf("%s: %w", format, err)
		}
		name := map[string]string{
			"deb": fmt.Sprintf("enroot-cri_%s_amd64.deb", version),
			"rpm": fmt.Sprintf("enroot-cri-%s.x86_64.rpm", version),
		}[format]
		var buf bytes.Buffer
		if err := pkgr.Package(info, &buf); err != nil {
			return fmt.Errorf("%s: %w", format, err)
		}
		path := filepath.Join(out, name)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Println(path)
	}
	return os.RemoveAll(stage)
}

func writeGzip(path string, data []byte) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression) // no name, no time: gzip -9n
	if err != nil {
		return err
	}
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// packageInfo is the package for format ("deb" or "rpm").
func packageInfo(format, version, bin, stage string) *nfpm.Info {
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
	}
	share := "/usr/share/enroot-cri/"
	unit := "/lib/systemd/system/enroot-cri.service"
	tmpfiles := "/usr/lib/tmpfiles.d/enroot-cri.conf"
	if format == "rpm" {
		unit = "/usr/lib/systemd/system/enroot-cri.service"
	}
	contents := files.Contents{
		file(filepath.Join(bin, "enroot-cri"), "/usr/bin/enroot-cri", 0o755),
		file(filepath.Join(bin, "enroot-cri-nvml"), "/usr/bin/enroot-cri-nvml", 0o755),
		file("packaging/enroot-cri.service", unit, 0o644),
		file("packaging/tmpfiles.conf", tmpfiles, 0o644),
		file("packaging/runtimeclass.yaml", share+"runtimeclass.yaml", 0o644),
		file("packaging/kubelet-config.yaml", share+"kubelet-config.yaml", 0o644),
		file("packaging/10-enroot-cri.conflist", share+"10-enroot-cri.conflist", 0o644),
		file("packaging/slurm-prolog.sh", share+"slurm-prolog.sh", 0o755),
		file("packaging/slurm-epilog.sh", share+"slurm-epilog.sh", 0o755),
		file("packaging/pyxis-importer.sh", "/usr/libexec/enroot-cri/pyxis-importer", 0o755),
		file(filepath.Join(bin, "enroot-cri-shim"), "/usr/libexec/enroot-cri/enroot-cri-shim", 0o755),
		file(filepath.Join(stage, "enroot-cri.8.gz"), "/usr/share/man/man8/enroot-cri.8.gz", 0o644),
		file(filepath.Join(stage, "enroot-cri-nvml.8.gz"), "/usr/share/man/man8/enroot-cri-nvml.8.gz", 0o644),
		file("README.md", "/usr/share/doc/enroot-cri/README.md", 0o644),
		file("packaging/copyright", "/usr/share/doc/enroot-cri/copyright", 0o644),
	}
	conf := file(filepath.Join(stage, "config.toml"), "/etc/enroot-cri/config.toml", 0o644)
	conf.Type = files.TypeConfigNoReplace // an upgrade never overwrites it
	contents = append(contents, conf)
	info := &nfpm.Info{
		Name: "enroot-cri", Arch: "amd64", Platform: "linux", Version: version,
		Section: "admin", Priority: "optional",
		Maintainer:  "enroot-cri maintainers <enroot-cri@example.org>",
		Description: description, Vendor: "enroot-cri", Homepage: "https://github.com/enroot-cri/enroot-cri",
		License: "unspecified",
	}
	info.Depends = []string{"squashfs-tools"}
	info.Recommends = []string{"containernetworking-plugins", "enroot"}
	info.Suggests = []string{"slurm-client"}
	switch format {
	case "deb":
		info.Depends = append(info.Depends, "libc6")
		contents = append(contents,
			file(filepath.Join(stage, "changelog.gz"), "/usr/share/doc/enroot-cri/changelog.gz", 0o644),
			file("packaging/lintian-overrides", "/usr/share/lintian/overrides/enroot-cri", 0o644))
		info.Scripts = nfpm.Scripts{PostInstall: "packaging/scripts/deb-postinst.sh",
			PreRemove: "packaging/scripts/deb-prerm.sh", PostRemove: "packaging/scripts/deb-postrm.sh"}
	case "rpm":
		info.Depends = append(info.Depends, "glibc")
		info.Scripts = nfpm.Scripts{PostInstall: "packaging/scripts/rpm-post.sh",
			PreRemove: "packaging/scripts/rpm-preun.sh", PostRemove: "packaging/scripts/rpm-postun.sh"}
		info.RPM.Group = "System Environment/Daemons"
		info.RPM.Summary = "Kubernetes container runtime that runs pods as Slurm job steps"
	}
	info.Contents = contents
	return info
}
