// Package users resolves a Dockerfile USER (or --chown) specification against
// the passwd and group files of an image root filesystem, with the same rules
// Docker and BuildKit apply (they both use runc's libcontainer/user logic).
package users

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Identity is the resolved numeric identity of a user inside an image.
type Identity struct {
	UID, GID uint32
	// Groups are the supplementary groups the user is listed in by
	// /etc/group. Empty when the spec names a group explicitly, as in Docker.
	Groups []uint32
	// Home is the passwd home directory, or "" when the user has no entry.
	Home string
}

// maxID keeps ids out of the range the kernel reserves: (uid_t)-1 means
// "unchanged" to setresuid, so it can never be a real id.
const maxID = 1<<32 - 2

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// Lookup resolves spec ("user", "uid", "user:group", "uid:gid", ...) against
// rootfs/etc/passwd and rootfs/etc/group. Numeric parts need no entry; names
// must exist. An empty spec means root.
func Lookup(rootfs, spec string) (Identity, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if hasGroup && groupPart == "" {
		// "app:" is "app", as libcontainer's GetExecUser (BuildKit's RUN) reads it: the
		// passwd group and the /etc/group memberships.
		hasGroup = false
	}
	if userPart == "" {
		// Docker treats a missing user part as the default user, root.
		userPart = "0"
	}

	uid, uidErr := parseID(userPart)
	if uidErr != nil && isNumeric(userPart) {
		return Identity{}, fmt.Errorf("invalid user %q: %w", spec, uidErr)
	}

	users, err := readPasswd(rootfs)
	if err != nil {
		return Identity{}, err
	}
	var matched *passwdEntry
	for i := range users {
		u := &users[i]
		// File order decides between a name and a numeric uid match, like
		// libcontainer's ParsePasswdFilter.
		if u.name == userPart || (uidErr == nil && u.uid == uid) {
			matched = u
			break
		}
	}

	id := Identity{}
	if matched != nil {
		id.UID, id.GID, id.Home = matched.uid, matched.gid, matched.home
	} else {
		if uidErr != nil {
			return Identity{}, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
		}
		id.UID = uid
	}

	if !hasGroup && matched == nil {
		// No name to look up memberships for.
		return id, nil
	}
	groups, err := readGroup(rootfs)
	if err != nil {
		return Identity{}, err
	}
	if hasGroup {
		gid, gidErr := parseID(groupPart)
		if gidErr != nil && isNumeric(groupPart) {
			return Identity{}, fmt.Errorf("invalid group %q: %w", groupPart, gidErr)
		}
		for _, g := range groups {
			if g.name == groupPart || (gidErr == nil && g.gid == gid) {
				id.GID = g.gid
				return id, nil
			}
		}
		if gidErr != nil {
			return Identity{}, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
		}
		id.GID = gid
		return id, nil
	}
	for _, g := range groups {
		for _, m := range g.members {
			if m == matched.name {
				id.Groups = append(id.Groups, g.gid)
				break
			}
		}
	}
	return id, nil
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func parseID(s string) (uint32, error) {
	if !isNumeric(s) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxID {
		return 0, fmt.Errorf("id %s out of range [0, %d]", s, maxID)
	}
	return uint32(n), nil
}

func readPasswd(rootfs string) ([]passwdEntry, error) {
	var out []passwdEntry
	err := readColonFile(rootfs, "etc/passwd", func(f []string) {
		// name:password:uid:gid:gecos:home:shell
		if len(f) < 4 {
			return
		}
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 != nil || err2 != nil {
			return
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	})
	return out, err
}

func readGroup(rootfs string) ([]groupEntry, error) {
	var out []groupEntry
	err := readColonFile(rootfs, "etc/group", func(f []string) {
		// name:password:gid:member,member
		if len(f) < 3 {
			return
		}
		gid, err := parseID(f[2])
		if err != nil {
			return
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			e.members = strings.Split(f[3], ",")
		}
		out = append(out, e)
	})
	return out, err
}

// readColonFile feeds each non-comment line of rootfs/rel, split on ':', to
// fn. A missing file is not an error: scratch images have none, and numeric
// ids must still work there.
func readColonFile(rootfs, rel string, fn func([]string)) error {
	f, err := openInRoot(rootfs, rel)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open /%s in %s: %w", rel, rootfs, err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			fn(strings.Split(line, ":"))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read /%s in %s: %w", rel, rootfs, err)
		}
	}
}

// openInRoot opens rel for reading with every symlink (absolute or "..")
// resolved as if rootfs were "/", so an image cannot make strata read host
// files such as /etc/shadow through /etc/passwd -> /../../etc/shadow.
func openInRoot(rootfs, rel string) (*os.File, error) {
	dir, err := os.Open(rootfs)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	how := &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(int(dir.Fd()), rel, how)
		if err == unix.EINTR || err == unix.EAGAIN {
			// openat2 asks for a retry when a concurrent rename races the
			// in-root resolution.
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "openat2", Path: rel, Err: err}
		}
		return os.NewFile(uintptr(fd), rootfs+"/"+strings.TrimPrefix(rel, "/")), nil
	}
}

// Owner resolves a COPY/ADD --chown value, or the USER that owns the directories WORKDIR
// creates, the way BuildKit's file operations do (client/llb WithUser, then the solver's
// readUser), which differs from Lookup on purpose:
//   - a numeric user is used as is, and its group defaults to the same number ("123" is
//     123:123), without reading /etc/passwd;
//   - "root" is 0 even when /etc/passwd has no such entry;
//   - a name missing from /etc/passwd (or a missing file) falls back to 0:0, and a group name
//     missing from /etc/group keeps the gid the user part gave; neither is an error;
//   - an empty user or group part ("app:", ":app") is id 0: llb sends an empty name as ID 0.
//
// BuildKit's testCopyChownCreateDest and testCopyChownExistingDir (dockerfile_copy_test.go) cover
// the name forms.
func Owner(rootfs, spec string) (uid, gid uint32, err error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		userPart = "0"
	}
	if hasGroup && groupPart == "" {
		groupPart = "0"
	}
	if n, ok, err := fileOpID(userPart); err != nil {
		return 0, 0, fmt.Errorf("invalid user %q: %w", spec, err)
	} else if ok {
		uid, gid = n, n
	} else {
		users, err := readPasswd(rootfs)
		if err != nil {
			return 0, 0, err
		}
		for _, u := range users {
			// The first entry with the name wins, as in moby/sys/user's ParsePasswdFilter.
			if u.name == userPart {
				uid, gid = u.uid, u.gid
				break
			}
		}
	}
	if !hasGroup {
		return uid, gid, nil
	}
	if n, ok, err := fileOpID(groupPart); err != nil {
		return 0, 0, fmt.Errorf("invalid group %q: %w", spec, err)
	} else if ok {
		return uid, n, nil
	}
	groups, err := readGroup(rootfs)
	if err != nil {
		return 0, 0, err
	}
	for _, g := range groups {
		if g.name == groupPart {
			return uid, g.gid, nil
		}
	}
	return uid, gid, nil
}

// fileOpID reports whether s is an id as BuildKit's llb parses it: "root", or a decimal number
// that fits an int32 (larger numbers are names there). A negative number would mean "leave the
// owner unchanged" to chown, so it is refused instead.
func fileOpID(s string) (uint32, bool, error) {
	if s == "root" {
		return 0, true, nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, false, nil
	}
	if n < 0 {
		return 0, false, fmt.Errorf("id %s is negative", s)
	}
	return uint32(n), true, nil
}
