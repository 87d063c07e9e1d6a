package enroot

import (
	"strings"
	"testing"
)

// Enroot's fstab and environment files come from the node's administrator, but the
// image's /etc/fstab and /etc/environment and what hooks append from a pod's data
// go through the same parsers: no input may make them panic or hang.

func FuzzParseFstab(f *testing.F) {
	for _, seed := range []string{
		"${ENROOT_ROOTFS}/data /data none x-create=dir,bind,rw,nosuid,nodev\n",
		"/proc /proc none x-create=dir,rbind,rw,nosuid,nodev,noexec,rslave 0 -1\n",
		"tmpfs /tmp tmpfs x-create=dir,rw,mode=1777\n# comment\n\n$X ${Y} none x-move,x-detach,nofail 0 x\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		entries, err := ParseFstab(strings.NewReader(text), func(name string) (string, bool) { return "/" + name, true })
		if err == nil {
			for _, e := range entries {
				if e.Source == "" && e.Target == "" {
					t.Fatalf("an entry without source and target from %q", text)
				}
			}
		}
	})
}

func FuzzParseEnviron(f *testing.F) {
	for _, seed := range []string{"PATH=/usr/bin:${PATH}\nHOME\n#c\nENROOT_X=1\n", "A=\"quoted value\"\nB='x'\n1BAD=y\n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		env, err := ParseEnviron(strings.NewReader(text), func(string) (string, bool) { return "v", true })
		if err != nil {
			return
		}
		for _, kv := range env {
			name, _, ok := strings.Cut(kv, "=")
			if !ok || !envName.MatchString(name) || strings.HasPrefix(name, "ENROOT_") {
				t.Fatalf("%q let through %q", text, kv)
			}
		}
	})
}

func FuzzParsePasswd(f *testing.F) {
	f.Add("alice:x:5001:5001:Alice:/home/alice:/bin/bash\n")
	f.Add("::::::\n")
	f.Fuzz(func(t *testing.T, line string) {
		a, err := ParsePasswd(strings.NewReader(line))
		if err == nil && a.Name == "" {
			t.Fatalf("an account without a name from %q", line)
		}
	})
}

// An image URI comes from a job's srun line, through the image socket, to the daemon.
func FuzzParseURI(f *testing.F) {
	for _, seed := range []string{"docker://ubuntu:24.04", "docker://$oauthtoken@nvcr.io#nvidia/pytorch:24.05-py3",
		"docker://127.0.0.1:5000/a@sha256:0123", "docker://a@b@c#d", "docker://\n", "podman://x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(u.Reference(), " \n\t") || u.Registry == "" || u.Image == "" {
			t.Fatalf("%q parsed to %+v", s, u)
		}
	})
}
