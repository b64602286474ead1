package executor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// resolveInRoot resolves p inside root the way the runtime resolves mount
// targets: symlinks are followed, but absolute targets and ".." never leave
// root. Components that do not exist are appended lexically. The result is a
// host path under root.
func resolveInRoot(root, p string) (string, error) {
	rest := strings.Split(filepath.Clean("/"+p), "/")
	cur := "" // resolved so far, relative to root, no symlinks
	for hops := 0; len(rest) > 0; {
		comp := rest[0]
		rest = rest[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir("/" + cur)[1:]
			continue
		}
		next := filepath.Join(cur, comp)
		fi, err := os.Lstat(filepath.Join(root, next))
		if errors.Is(err, os.ErrNotExist) {
			// Nothing below a missing component can be a symlink yet.
			return filepath.Join(root, filepath.Clean("/"+next+"/"+strings.Join(rest, "/"))), nil
		}
		if err != nil {
			return "", fmt.Errorf("resolve %s in %s: %w", p, root, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 255 {
			return "", fmt.Errorf("resolve %s in %s: too many levels of symbolic links", p, root)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", fmt.Errorf("resolve %s in %s: %w", p, root, err)
		}
		if filepath.IsAbs(target) {
			cur = ""
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(root, cur), nil
}

// mkdirInRoot creates dir (as seen from inside root) and missing parents,
// root-owned 0755 like Docker's implicit WORKDIR creation.
func mkdirInRoot(root, dir string) error {
	p, err := resolveInRoot(root, dir)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(p); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	// resolveInRoot left no symlinks in p, and nothing runs in the rootfs
	// yet, so plain MkdirAll cannot be redirected out of it.
	return os.MkdirAll(p, 0o755)
}

type timestamps struct {
	atime, mtime unix.Timespec
}

// stubSet remembers which mountpoints the runtime is about to create, so they
// can be removed after the run: the rootfs is an overlay whose upperdir
// becomes the layer, and a RUN that changed nothing must produce nothing.
type stubSet struct {
	root string
	// created are host paths that did not exist before the run.
	created []string
	// parents are the existing directories the stubs were created in, with
	// their times before the run, so removing a stub also undoes the mtime
	// change creating it caused.
	parents map[string]timestamps
	// upper is the overlay upperdir of root when root is an overlay mount;
	// upperMissing lists directories (relative to root) that are only in the
	// lower layers now and that creating a stub inside would copy up.
	upper        string
	mount        *mountInfo
	upperMissing []string
}

func recordStubs(root string, targets []string) (*stubSet, error) {
	s := &stubSet{root: root, parents: map[string]timestamps{}}
	seen := map[string]bool{}
	copyUps := map[string]bool{}
	for _, t := range targets {
		p, err := resolveInRoot(root, t)
		if err != nil {
			return nil, fmt.Errorf("mount target %s: %w", t, err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		parts := strings.Split(rel, string(filepath.Separator))
		for i := range parts {
			sub := filepath.Join(parts[:i+1]...)
			full := filepath.Join(root, sub)
			if _, err := os.Lstat(full); err == nil {
				continue
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("stat mount target %s: %w", full, err)
			}
			parent := filepath.Dir(full)
			if _, ok := s.parents[parent]; !ok {
				var st unix.Stat_t
				if err := unix.Lstat(parent, &st); err == nil {
					s.parents[parent] = timestamps{atime: st.Atim, mtime: st.Mtim}
				}
				for d := filepath.Dir(sub); d != "."; d = filepath.Dir(d) {
					copyUps[d] = true
				}
			}
			for j := i; j < len(parts); j++ {
				c := filepath.Join(root, filepath.Join(parts[:j+1]...))
				if !seen[c] {
					seen[c] = true
					s.created = append(s.created, c)
				}
			}
			break
		}
	}
	if len(copyUps) == 0 {
		return s, nil
	}
	mi, err := overlayMount(root)
	if err != nil || mi == nil {
		// Not an overlay (or unreadable mountinfo): no copy-ups to undo.
		return s, nil
	}
	s.mount, s.upper = mi, mi.option("upperdir")
	if s.upper == "" {
		return s, nil
	}
	for d := range copyUps {
		if _, err := os.Lstat(filepath.Join(s.upper, d)); errors.Is(err, os.ErrNotExist) {
			s.upperMissing = append(s.upperMissing, d)
		}
	}
	return s, nil
}

// cleanup removes stubs that are still empty, deepest first, restores the
// times of the directories they were created in, and undoes the copy-up of
// lower directories that only held stubs.
func (s *stubSet) cleanup() error {
	paths := append([]string(nil), s.created...)
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		// Something the step itself wrote at a mountpoint is kept: only an
		// empty dir or an empty file is a stub.
		if fi.IsDir() || (fi.Mode().IsRegular() && fi.Size() == 0) {
			_ = os.Remove(p)
		}
	}
	for dir, ts := range s.parents {
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, dir, []unix.Timespec{ts.atime, ts.mtime}, unix.AT_SYMLINK_NOFOLLOW)
	}
	return s.undoCopyUps()
}

// undoCopyUps removes directories from the upperdir that exist there only
// because a stub was created inside them. Changing an upperdir under a
// mounted overlay is undefined, so the overlay is unmounted first and a new
// one with the same options put in its place. The replacement's options are
// checked before anything is unmounted; whenever that or the unmount fails
// (busy, an old kernel without fsopen, options that no longer resolve) the
// copies are left alone: they are identical to their lower originals, times
// included, so the layer is larger than needed but not wrong.
func (s *stubSet) undoCopyUps() error {
	if s.upper == "" || len(s.upperMissing) == 0 {
		return nil
	}
	var redundant []string
	for _, d := range s.upperMissing {
		if empty, _ := isEmptyDir(filepath.Join(s.upper, d)); empty {
			redundant = append(redundant, d)
		}
	}
	if len(redundant) == 0 {
		return nil
	}
	fsfd, err := s.mount.prepare()
	if err != nil {
		return nil
	}
	defer unix.Close(fsfd)
	if err := unix.Unmount(s.root, 0); err != nil {
		return nil
	}
	sort.Slice(redundant, func(i, j int) bool { return len(redundant[i]) > len(redundant[j]) })
	for _, d := range redundant {
		p := filepath.Join(s.upper, d)
		if empty, _ := isEmptyDir(p); empty {
			_ = os.Remove(p)
		}
	}
	if err := s.mount.attach(fsfd, s.root); err != nil {
		return fmt.Errorf("remount overlay %s after removing mount stubs: %w", s.root, err)
	}
	return nil
}

// prepare opens an overlay fs context configured like m. Path options are
// resolved here, so a replacement that could not be mounted is found out
// while the original is still in place. The superblock itself is created only
// in attach, after the original is gone, as overlayfs objects to two mounts
// sharing an upperdir.
func (m *mountInfo) prepare() (int, error) {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	if m.source != "" {
		if err := unix.FsconfigSetString(fd, "source", m.source); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	for _, o := range m.superOpt {
		if o == "rw" || o == "ro" || o == "" {
			continue
		}
		k, v, hasValue := strings.Cut(o, "=")
		if hasValue {
			err = unix.FsconfigSetString(fd, k, v)
		} else {
			err = unix.FsconfigSetFlag(fd, k)
		}
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("overlay option %s: %w", o, err)
		}
	}
	return fd, nil
}

func (m *mountInfo) attach(fsfd int, target string) error {
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, m.attrs)
	if err != nil {
		return fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move mount: %w", err)
	}
	return nil
}

func isEmptyDir(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.IsDir() {
		return false, err
	}
	_, err = f.Readdirnames(1)
	if err == io.EOF {
		return true, nil
	}
	return false, err
}

type mountInfo struct {
	source   string
	attrs    int // MOUNT_ATTR_* of the mount (not the superblock)
	superOpt []string
}

func (m *mountInfo) option(key string) string {
	for _, o := range m.superOpt {
		if k, v, ok := strings.Cut(o, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// overlayMount finds the overlay mounted exactly at dir in this mount
// namespace, or nil.
func overlayMount(dir string) (*mountInfo, error) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var found *mountInfo
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint mountopts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f1, f2 := strings.Fields(pre), strings.Fields(post)
		if len(f1) < 6 || len(f2) < 3 {
			continue
		}
		if unescapeMountinfo(f1[4]) != real {
			continue
		}
		if f2[0] != "overlay" {
			// A later mount on the same point hides earlier ones.
			found = nil
			continue
		}
		found = &mountInfo{
			source:   unescapeMountinfo(f2[1]),
			attrs:    mountAttrs(f1[5]),
			superOpt: strings.Split(unescapeMountinfo(f2[2]), ","),
		}
	}
	return found, sc.Err()
}

func mountAttrs(opts string) int {
	var at int
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "ro":
			at |= unix.MOUNT_ATTR_RDONLY
		case "nosuid":
			at |= unix.MOUNT_ATTR_NOSUID
		case "nodev":
			at |= unix.MOUNT_ATTR_NODEV
		case "noexec":
			at |= unix.MOUNT_ATTR_NOEXEC
		case "noatime":
			at |= unix.MOUNT_ATTR_NOATIME
		case "strictatime":
			at |= unix.MOUNT_ATTR_STRICTATIME
		case "nodiratime":
			at |= unix.MOUNT_ATTR_NODIRATIME
		}
	}
	return at
}

// unescapeMountinfo undoes the kernel's octal escaping of space, tab,
// newline and backslash in mountinfo fields.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
