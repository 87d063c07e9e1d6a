package image

import (
	"archive/tar"
	"bytes"
	"testing"
)

// Image references come from pod specs, layers from image authors: no input may make
// the parsers panic (merge_test.go fuzzes the layers).

func FuzzParseReference(f *testing.F) {
	for _, seed := range []string{"busybox", "registry.k8s.io/pause:3.10", "127.0.0.1:5000/a/b@sha256:" +
		"0123456789012345678901234567890123456789012345678901234567890123", "UPPER/Case", "a/../b", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if r, err := parseReference(ref, false); err == nil {
			_ = displayName(r)
			_ = repoName(r)
		}
	})
}

// tarBytes writes entries as a tar stream for seeds.
func tarBytes(f *testing.F, hdrs ...*tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			f.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(make([]byte, h.Size)); err != nil {
				f.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// An Enroot image's /etc/rc, /etc/environment and /etc/fstab come from whoever made the
// squashfs file: reading them back never panics, and what Enroot's quoting writes
// reads back to the same words.
func FuzzEnrootConfig(f *testing.F) {
	f.Add("mkdir -p \"/w\" 2> /dev/null\ncd \"/w\" && unset OLDPWD || exit 1\n\nif [ $# -gt 0 ]; then\n    exec 'a' \"$@\"\nelse\n    exec 'a' $'b\\n\\x41\\101'\nfi\n",
		"A=1\n B=\"2\"\n#c\n", "${ENROOT_ROOTFS}/v /v none x-create=dir,bind\n", "w1", "w'2")
	f.Add("exec", "=", "", "$'", "")
	f.Fuzz(func(t *testing.T, rc, env, fstab, w1, w2 string) {
		_ = enrootConfig(map[string]string{"etc/rc": rc, "etc/environment": env, "etc/fstab": fstab})
		words := []string{w1, w2}
		got, err := bashWords(bashQuoteWords(words))
		if err != nil || len(got) != 2 || got[0] != w1 || got[1] != w2 {
			t.Fatalf("bash quoting of %q read back as %q (%v)", words, got, err)
		}
	})
}
