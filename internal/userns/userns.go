// Package userns sets up the user namespace of a rootless build: it reads the invoking user's
// subordinate id ranges from /etc/subuid and /etc/subgid, maps them with the setuid helpers
// newuidmap/newgidmap (Debian's uidmap package), and tells whether this process runs in a user
// namespace, which decides how overlayfs is mounted and how runc is asked to run.
package userns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Range is a block of ids: inside the namespace, Inside.. map to Outside.. on the host.
type Range struct {
	Inside, Outside, Count uint32
}

// Mapping is what a rootless build's namespace maps: the invoking user to root, and its
// subordinate ranges to 1.. after it, in the order the files list them (as podman and buildah do).
type Mapping struct {
	User                 string
	UIDs                 []Range
	GIDs                 []Range
	uidHelper, gidHelper string
}

// Default files, variables so tests can point at their own.
var (
	SubUIDFile = "/etc/subuid"
	SubGIDFile = "/etc/subgid"
)

// Plan works out the mapping for the current (non-root) user and checks everything the kernel
// and the host must offer, so a build fails before it starts, with what to change.
func Plan() (*Mapping, error) {
	if err := checkKernel(); err != nil {
		return nil, err
	}
	uid, gid := os.Getuid(), os.Getgid()
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	m := &Mapping{User: name}
	var err error
	if m.uidHelper, err = helper("newuidmap"); err != nil {
		return nil, err
	}
	if m.gidHelper, err = helper("newgidmap"); err != nil {
		return nil, err
	}
	if m.UIDs, err = ranges(SubUIDFile, name, uid); err != nil {
		return nil, err
	}
	if m.GIDs, err = ranges(SubGIDFile, name, uid); err != nil {
		return nil, err
	}
	m.UIDs = append([]Range{{0, uint32(uid), 1}}, m.UIDs...)
	m.GIDs = append([]Range{{0, uint32(gid), 1}}, m.GIDs...)
	return m, nil
}

func helper(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("rootless build: %s not found in PATH: install the uidmap package (apt-get install uidmap; dnf install shadow-utils)", name)
	}
	return p, nil
}

// ranges reads the subordinate ranges of user (by name or numeric uid) from file, laid out
// consecutively from id 1 inside the namespace.
func ranges(file, name string, uid int) ([]Range, error) {
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("rootless build: read %s: %w", file, err)
	}
	var out []Range
	next := uint32(1)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) != 3 || (f[0] != name && f[0] != strconv.Itoa(uid)) {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 {
			return nil, fmt.Errorf("rootless build: %s: malformed line %q (want user:start:count)", file, sc.Text())
		}
		out = append(out, Range{Inside: next, Outside: uint32(start), Count: uint32(count)})
		next += uint32(count)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("rootless build: %s has no range for user %s: add one, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s` (or a line \"%s:100000:65536\" in /etc/subuid and /etc/subgid)", file, name, name, name)
	}
	return out, nil
}

// Apply writes the mapping of process pid, which must be in a user namespace that has none yet.
func (m *Mapping) Apply(pid int) error {
	for _, h := range []struct {
		bin string
		rs  []Range
	}{{m.uidHelper, m.UIDs}, {m.gidHelper, m.GIDs}} {
		args := []string{strconv.Itoa(pid)}
		for _, r := range h.rs {
			args = append(args, fmt.Sprint(r.Inside), fmt.Sprint(r.Outside), fmt.Sprint(r.Count))
		}
		if out, err := exec.Command(h.bin, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("rootless build: %s %s: %w: %s (check the ranges of %s in /etc/subuid and /etc/subgid, and that %s is setuid root)",
				h.bin, strings.Join(args, " "), err, bytes.TrimSpace(out), m.User, h.bin)
		}
	}
	return nil
}

// checkKernel refuses kernels that cannot run a rootless build, naming the setting to change.
func checkKernel() error {
	if b, err := os.ReadFile("/proc/sys/kernel/unprivileged_userns_clone"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return errors.New("rootless build: unprivileged user namespaces are disabled: sysctl -w kernel.unprivileged_userns_clone=1")
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return errors.New("rootless build: user namespaces are disabled: sysctl -w user.max_user_namespaces=15000")
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("rootless build: uname: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	if !atLeast(rel, 5, 11) {
		return fmt.Errorf("rootless build: kernel %s cannot mount overlayfs in a user namespace (needs Linux 5.11 or later); build as root instead", rel)
	}
	return nil
}

// atLeast compares a kernel release ("6.1.0-18-amd64") with major.minor.
func atLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return true // unknown shape: let the mount itself decide
	}
	maj, err1 := strconv.Atoi(parts[0])
	mnr, err2 := strconv.Atoi(strings.TrimLeftFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return true
	}
	return maj > major || maj == major && mnr >= minor
}

var (
	inNS     bool
	inNSOnce sync.Once
)

// Running reports whether this process runs in a user namespace other than the initial one
// (a rootless build, or strata as root of a rootless container): then overlayfs needs userxattr,
// devices cannot be created and runc must not manage cgroups.
func Running() bool {
	inNSOnce.Do(func() {
		b, err := os.ReadFile("/proc/self/uid_map")
		if err != nil {
			return
		}
		f := strings.Fields(string(b))
		inNS = !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
	})
	return inNS
}

// ChownError explains a chown to uid:gid that failed with err because this process runs in a user
// namespace whose ranges do not reach that id (the kernel says EINVAL), or returns err as it is.
// Like rootless BuildKit, Docker and podman, strata refuses such a file rather than give it
// another owner.
func ChownError(err error, uid, gid int) error {
	if err == nil || !Running() || !errors.Is(err, unix.EINVAL) {
		return err
	}
	return fmt.Errorf("%w: owner %d:%d is beyond the ids this rootless build maps (the ranges in /etc/subuid and /etc/subgid): give the user ranges of at least %d ids, or build as root", err, uid, gid, max(uid, gid)+1)
}
