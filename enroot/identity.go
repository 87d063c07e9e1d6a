package enroot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
)

// ErrNoAccount is a user ID the host's user database does not know.
var ErrNoAccount = errors.New("no account on this node")

// Account is a user as the host's user database (NSS: files, LDAP, sssd) knows them,
// which is what Enroot's 10-shadow hook and enroot-switchroot use.
type Account struct {
	Name  string
	UID   uint32
	GID   uint32
	Gecos string
	Home  string
	Shell string
	// Groups are the supplementary groups the user has on the host (initgroups), the
	// primary group first.
	Groups []uint32
}

// LookupAccount asks the host's user database for uid through getent(1) and id(1),
// which go through NSS as a Slurm job's processes do. A uid without an entry is
// ErrNoAccount.
func LookupAccount(ctx context.Context, uid uint32) (Account, error) {
	out, err := exec.CommandContext(ctx, "getent", "passwd", strconv.FormatUint(uint64(uid), 10)).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return Account{}, fmt.Errorf("user %d: %w", uid, ErrNoAccount)
	}
	if err != nil {
		return Account{}, fmt.Errorf("look up user %d (getent passwd): %w", uid, err)
	}
	a, err := ParsePasswd(bytes.NewReader(out))
	if err != nil {
		return Account{}, fmt.Errorf("user %d: %w", uid, err)
	}
	ids, err := exec.CommandContext(ctx, "id", "-G", a.Name).Output()
	if err != nil {
		return Account{}, fmt.Errorf("look up the groups of %s (id -G): %w", a.Name, err)
	}
	if a.Groups, err = ParseIDs(string(ids)); err != nil {
		return Account{}, fmt.Errorf("groups of %s: %w", a.Name, err)
	}
	return a, nil
}

// ParsePasswd reads the first passwd(5) line of r.
func ParsePasswd(r io.Reader) (Account, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return Account{}, err
	}
	f := strings.Split(strings.TrimRight(line, "\n"), ":")
	if len(f) != 7 || f[0] == "" {
		return Account{}, fmt.Errorf("passwd entry %q: want 7 fields NAME:PASSWORD:UID:GID:GECOS:HOME:SHELL", line)
	}
	uid, err1 := strconv.ParseUint(f[2], 10, 32)
	gid, err2 := strconv.ParseUint(f[3], 10, 32)
	if err1 != nil || err2 != nil {
		return Account{}, fmt.Errorf("passwd entry %q: bad uid or gid", line)
	}
	return Account{Name: f[0], UID: uint32(uid), GID: uint32(gid), Gecos: f[4], Home: f[5], Shell: f[6]}, nil
}

// ParseIDs reads space-separated numeric IDs (id -G output).
func ParseIDs(s string) ([]uint32, error) {
	var out []uint32
	for _, field := range strings.Fields(s) {
		n, err := strconv.ParseUint(field, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a group ID", field)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// LookupName finds the user ID of a user name in the host's user database.
func LookupName(ctx context.Context, name string) (uint32, error) {
	out, err := exec.CommandContext(ctx, "id", "-u", "--", name).Output()
	if err != nil {
		return 0, fmt.Errorf("user %s: %w", name, ErrNoAccount)
	}
	ids, err := ParseIDs(string(out))
	if err != nil || len(ids) != 1 {
		return 0, fmt.Errorf("id -u %s: unexpected output %q", name, out)
	}
	return ids[0], nil
}
