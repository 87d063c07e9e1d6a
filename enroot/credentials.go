package enroot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Credential is the login and password Enroot would send to a registry.
type Credential struct {
	Login    string
	Password string
}

// CredentialsFile is Enroot's credentials file for a user: $ENROOT_CONFIG_PATH/.credentials.
func CredentialsFile(configPath string) string {
	return filepath.Join(configPath, ".credentials")
}

// ConfigPath is ENROOT_CONFIG_PATH as Enroot computes it for the calling user: the
// setting when there is one, else ${XDG_CONFIG_HOME:-$HOME/.config}/enroot.
func ConfigPath(s Settings, lookup func(string) (string, bool)) string {
	if p := s["ENROOT_CONFIG_PATH"]; p != "" {
		return p // LoadSettings expanded its references
	}
	if x, ok := lookup("XDG_CONFIG_HOME"); ok && x != "" {
		return filepath.Join(x, "enroot")
	}
	home, _ := lookup("HOME")
	return filepath.Join(home, ".config", "enroot")
}

// LookupCredential finds the credentials `enroot import` uses for registry (host[:port])
// and user, from a netrc-style file of one-line entries
// ("machine HOST login LOGIN password PASSWORD"): the entry of HOST (the registry
// without its port) with that login, or the first entry of HOST when user is "". A
// password starting with "$" is evaluated by the shell, as Enroot does, so the file
// may say "password $NGC_API_KEY" or "password $(aws ecr get-login-password)": this
// runs as the caller, on the caller's own file. found is false when the file or the
// entry does not exist (Enroot then goes anonymous, or asks with only the login).
func LookupCredential(ctx context.Context, file, registry, user string) (c Credential, found bool, err error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return Credential{}, false, nil // Enroot's grep -s reads such a file as no entry
	}
	if err != nil {
		return Credential{}, false, fmt.Errorf("read Enroot credentials: %w", err)
	}
	host, _, _ := strings.Cut(registry, ":")
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "machine" || f[1] != host || f[2] != "login" {
			continue
		}
		if user != "" && f[3] != user {
			continue
		}
		c = Credential{Login: f[3]}
		if len(f) >= 6 && f[4] == "password" {
			c.Password = f[5]
			if strings.HasPrefix(f[5], "$") {
				if c.Password, err = evalPassword(ctx, passwordField(line)); err != nil {
					return Credential{}, false, fmt.Errorf("credentials of %s in %s: %w", host, file, err)
				}
			}
		}
		return c, true, nil
	}
	if err := sc.Err(); err != nil {
		return Credential{}, false, fmt.Errorf("read Enroot credentials %s: %w", file, err)
	}
	return Credential{}, false, nil
}

// passwordField is the line from its sixth field on (the password and whatever
// follows it), which Enroot hands to the shell whole.
func passwordField(line string) string {
	rest := line
	for range 5 {
		rest = strings.TrimLeft(rest, " \t")
		i := strings.IndexAny(rest, " \t")
		if i < 0 {
			return ""
		}
		rest = rest[i:]
	}
	return strings.TrimLeft(rest, " \t")
}

// evalPassword expands a password as Enroot's common::evalnetrc does (`echo WORDS` in
// a shell).
func evalPassword(ctx context.Context, words string) (string, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "echo "+words)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("evaluate password %q: %w: %s", words, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimRight(out.String(), "\n"), nil
}
