package server

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/enroot-cri/enroot-cri/errdefs"
	"github.com/enroot-cri/enroot-cri/internal/inroot"
)

// identity is the user a container's process runs as.
type identity struct {
	UID, GID int64
	Groups   []int64
	Home     string
}

// userRequest is what the pod spec and the image say about the user.
type userRequest struct {
	UID, GID     *int64 // run_as_user, run_as_group
	Username     string // run_as_username
	Supplemental []int64
	// Strict leaves out the groups the image's /etc/group gives the user
	// (SupplementalGroupsPolicy Strict); Merge, the default, adds them.
	Strict         bool
	ImageUser      string // the image's USER: "name", "uid", "name:group", "uid:gid"
	imageRoot      string // the image's tree, for /etc/passwd and /etc/group
	passwd, groups []byte
}

// resolveUser works out uid, gid and groups as containerd does: an explicit uid or
// user name wins over the image's user; a name is looked up in the image's
// /etc/passwd; groups listing the user in /etc/group are added.
func resolveUser(r userRequest) (identity, error) {
	r.passwd, _ = inroot.ReadFile(r.imageRoot, "/etc/passwd")
	r.groups, _ = inroot.ReadFile(r.imageRoot, "/etc/group")
	user, group := r.ImageUser, ""
	if i := strings.IndexByte(user, ':'); i >= 0 {
		user, group = user[:i], user[i+1:]
	}
	switch {
	case r.UID != nil:
		user, group = strconv.FormatInt(*r.UID, 10), ""
	case r.Username != "":
		user, group = r.Username, ""
	}
	id := identity{Home: "/"}
	name := ""
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil || user == "" {
		id.UID = uid
		if e, ok := findEntry(r.passwd, 2, user); ok {
			name, id.GID, id.Home = e[0], atoi(e[3]), e[5]
		}
	} else {
		e, ok := findEntry(r.passwd, 0, user)
		if !ok {
			return identity{}, fmt.Errorf("user %q is not in the image's /etc/passwd: %w", user, errdefs.ErrInvalidArgument)
		}
		name, id.UID, id.GID, id.Home = e[0], atoi(e[2]), atoi(e[3]), e[5]
	}
	if id.UID == 0 && id.Home == "/" && name == "" {
		id.Home = "/root" // runc's default for root without a passwd entry
	}
	if group != "" {
		gid, err := strconv.ParseInt(group, 10, 64)
		if err != nil {
			e, ok := findEntry(r.groups, 0, group)
			if !ok {
				return identity{}, fmt.Errorf("group %q is not in the image's /etc/group: %w", group, errdefs.ErrInvalidArgument)
			}
			gid = atoi(e[2])
		}
		id.GID = gid
	}
	if r.GID != nil {
		id.GID = *r.GID
	}
	if !r.Strict {
		id.Groups = memberOf(r.groups, name)
	}
	id.Groups = append(id.Groups, r.Supplemental...)
	return id, nil
}

// findEntry finds the colon-separated line whose field i is value.
func findEntry(data []byte, i int, value string) ([]string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) > i && f[i] == value {
			for len(f) < 7 {
				f = append(f, "")
			}
			return f, true
		}
	}
	return nil, false
}

// memberOf lists the gids of the groups that name user as a member.
func memberOf(groups []byte, user string) []int64 {
	if user == "" {
		return nil
	}
	var out []int64
	sc := bufio.NewScanner(bytes.NewReader(groups))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 {
			continue
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == user {
				out = append(out, atoi(f[2]))
			}
		}
	}
	return out
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
