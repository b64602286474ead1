// Package snapshot stores image layers unpacked in overlayfs format (one directory per layer,
// whiteouts as 0/0 character devices, opaque directories marked with trusted.overlay.opaque), mounts
// stacks of them with overlayfs, and turns an overlay upper directory back into a layer tar.
package snapshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/userns"
)

const (
	whiteoutPrefix = ".wh."
	// whiteoutMetaPrefix marks aufs bookkeeping entries (.wh..wh.plnk, .wh..wh.aufs); only the opaque
	// marker among them means anything to an overlay.
	whiteoutMetaPrefix = ".wh..wh."
	whiteoutOpaque     = ".wh..wh..opq"

	xattrOpaque    = "trusted.overlay.opaque"
	overlayXattrNS = "trusted.overlay."
	// userOverlayXattrNS is what overlayfs reads instead of trusted.overlay.* when mounted with
	// userxattr (rootless); a layer must not smuggle it in either.
	userOverlayXattrNS = "user.overlay."
	paxXattrPrefix     = "SCHILY.xattr."
)

// Unpack applies an uncompressed layer tar into dir, which must exist and be empty, in overlay
// format: `.wh.NAME` becomes a 0/0 character device NAME and `.wh..wh..opq` sets
// trusted.overlay.opaque=y on its directory (user.overlay.opaque in a user namespace, see userns.go).
//
// Every entry stays inside dir: names are cleaned ("/abs" lands at dir/abs), names that climb out
// with ".." are rejected, a symlink is never followed while resolving a later entry's parents (an entry
// below a symlink is an error), and hardlink targets must name an entry inside dir. Parent directories
// missing from the tar are created 0755 root:root. Because each layer is unpacked on its own, an
// entry below a path that is a symlink in a *lower* layer lands in a real directory here; layers
// written by Docker, BuildKit and Diff never contain that shape.
//
// Trusted.overlay.* and user.overlay.* xattrs carried by the tar are dropped so that a layer cannot forge overlay
// metadata (redirects, metacopy) beyond the whiteouts the tar format itself expresses.
func Unpack(r io.Reader, dir string) error {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("unpack: open %s: %w", dir, err)
	}
	defer unix.Close(root)

	u := &unpacker{root: root, dir: dir, dirTimes: map[string]*tar.Header{}, dirs: map[string]int{}}
	defer u.forgetDirs()
	if err := u.learnCreation(); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	u.startWriters(unpackWriters)
	defer u.stopWriters() // before forgetDirs: the writers borrow its descriptors
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("unpack: read tar: %w", err)
		}
		if len(u.dirs) > maxOpenDirs {
			if err := u.drain(); err != nil {
				return err
			}
			u.forgetDirs()
		}
		if err := u.entry(hdr, tr); err != nil {
			var werr *writerError
			if errors.As(err, &werr) {
				return werr
			}
			return fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
		if err := u.writersErr(); err != nil {
			return err
		}
	}
	if err := u.drain(); err != nil {
		return err
	}
	return u.finishDirs()
}

type unpacker struct {
	root int
	dir  string
	// dirTimes holds directory headers whose mtimes are applied last: adding children bumps a
	// directory's mtime, so setting it early would be undone.
	dirTimes map[string]*tar.Header
	// dirs caches O_PATH descriptors of directories already resolved below root without
	// following a symlink, by relative path, so an entry costs one lookup instead of one openat
	// per path component. A directory can only stop being one through removeExisting, which
	// empties the cache; nothing is ever renamed. The descriptors are owned here: callers of
	// openDir borrow them.
	dirs    map[string]int
	copyBuf [64 << 10]byte

	// What a new file gets without being told, so that the fchown and fchmod that would only
	// repeat it are skipped: most files of a base layer are root:root 0644/0755, and each call
	// dirties the inode once more. See learnCreation, ownedAsCreated and modeAsCreated.
	euid, egid int
	umask      uint32
	// dirGids holds the group each directory was given by its header (and the root's), for
	// directories created here; a directory made only as a missing parent is absent (its group
	// depends on set-gid bits and mount options), so entries below it are always chowned.
	dirGids map[string]int
	// acl is set once the root or any entry carries a default ACL, which replaces the umask for
	// the files created below it: modes are then always set explicitly.
	acl bool
	// w writes small files beside the reader (writers.go); nil when the unpack is serial.
	w *writers
}

// learnCreation reads what the kernel will give new entries: the owner (the effective ids), the
// umask and the root's group and default ACL.
func (u *unpacker) learnCreation() error {
	u.euid, u.egid = unix.Geteuid(), unix.Getegid()
	u.umask = 0o777 // unknown: every mode is set explicitly
	if m, ok := readUmask(); ok {
		u.umask = m
	}
	var st unix.Stat_t
	if err := unix.Fstat(u.root, &st); err != nil {
		return fmt.Errorf("stat %s: %w", u.dir, err)
	}
	u.dirGids = map[string]int{"": int(st.Gid)}
	if _, err := unix.Lgetxattr(procPath(u.root, "."), aclDefaultXattr, nil); !errors.Is(err, unix.ENODATA) {
		// Present, or unknowable (no xattr support gives no ACL either, but err on the safe side).
		u.acl = !errors.Is(err, unix.ENOTSUP)
	}
	return nil
}

// readUmask reads the process umask from /proc (Linux 4.7+) without setting it, which the
// umask call would do for every thread of the process.
func readUmask() (uint32, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return uint32(m), err == nil
		}
	}
	return 0, false
}

// aclDefaultXattr holds a directory's default ACL, which new entries below it inherit.
const aclDefaultXattr = "system.posix_acl_default"

// ownedAsCreated reports whether an entry created in the directory parentRel already has the
// owner hdr names: its uid is ours, and its gid is ours or the directory's (set-gid directories
// and the grpid mount option give the latter), both equal to the header's.
func (u *unpacker) ownedAsCreated(parentRel string, hdr *tar.Header) bool {
	if hdr.Uid != u.euid || hdr.Gid != u.egid {
		return false
	}
	g, ok := u.dirGids[parentRel]
	return ok && g == hdr.Gid
}

// modeAsCreated reports whether a file created with permission bits hdr.Mode&0o777 ends up with
// exactly hdr's mode: no set-id or sticky bit, nothing the umask removes, no default ACL.
func (u *unpacker) modeAsCreated(hdr *tar.Header) bool {
	return hdr.Mode&^0o777 == 0 && uint32(hdr.Mode)&u.umask == 0 && !u.acl
}

// maxOpenDirs bounds the descriptors dirs keeps; past it the cache starts over (between
// entries, when nothing borrows one).
const maxOpenDirs = 512

func (u *unpacker) forgetDirs() {
	for rel, fd := range u.dirs {
		unix.Close(fd)
		delete(u.dirs, rel)
	}
}

// writeAll copies r into the file descriptor fd through copyBuf with plain write calls: wrapping
// fd in an os.File would cost an fcntl and an allocation per file, which a layer of many small
// files feels.
func (u *unpacker) writeAll(fd int, r io.Reader) error {
	for {
		n, rerr := r.Read(u.copyBuf[:])
		for b := u.copyBuf[:n]; len(b) > 0; {
			w, err := unix.Write(fd, b)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			if w == 0 {
				return io.ErrShortWrite
			}
			b = b[w:]
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// cleanName turns a tar name into a path relative to the layer root, "" meaning the root itself.
func cleanName(name string) (string, error) {
	name = strings.TrimLeft(name, "/")
	if name == "" {
		return "", nil
	}
	c := path.Clean(name)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("path escapes the layer root")
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// openParent returns a borrowed O_PATH descriptor for the directory holding rel, creating missing
// parents, and refusing to pass through anything that is not a real directory (in particular a
// symlink).
func (u *unpacker) openParent(rel string, create bool) (int, string, error) {
	parent, base := path.Split(rel)
	fd, err := u.openDir(strings.TrimSuffix(parent, "/"), create)
	if err != nil {
		return -1, "", err
	}
	return fd, base, nil
}

// openDir returns a borrowed O_PATH descriptor for the directory rel ("" is the root), resolving
// one component at a time from the nearest cached ancestor.
func (u *unpacker) openDir(rel string, create bool) (int, error) {
	if rel == "" {
		return u.root, nil
	}
	if fd, ok := u.dirs[rel]; ok {
		return fd, nil
	}
	parentRel, comp := path.Split(rel)
	pfd, err := u.openDir(strings.TrimSuffix(parentRel, "/"), create)
	if err != nil {
		return -1, err
	}
	if err := u.touch(rel); err != nil {
		return -1, err
	}
	next, err := unix.Openat(pfd, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err = unix.Mkdirat(pfd, comp, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
			next, err = unix.Openat(pfd, comp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return -1, fmt.Errorf("parent %q is not a directory (symlinks are not followed)", rel)
		}
		return -1, fmt.Errorf("open parent %q: %w", rel, err)
	}
	u.dirs[rel] = next
	u.use(rel)
	return next, nil
}

// procPath names base inside the directory fd without resolving anything outside it, for the few
// calls (xattrs, fchmod of a path) that have no *at form.
func procPath(fd int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + base
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("layer root must be a directory")
		}
		// The root's group decides which files the writers chown.
		if err := u.drain(); err != nil {
			return err
		}
		return u.applyDirMeta("", hdr)
	}
	if err := u.touch(rel); err != nil {
		return err
	}
	fresh := u.use(rel)
	base := path.Base(rel)

	if strings.HasPrefix(base, whiteoutPrefix) {
		parentRel := path.Dir(rel)
		if parentRel == "." {
			parentRel = ""
		}
		if base == whiteoutOpaque {
			fd, err := u.openDir(parentRel, true)
			if err != nil {
				return err
			}
			if err := unix.Lsetxattr(procPath(fd, "."), opaqueXattr(), []byte("y"), 0); err != nil {
				return fmt.Errorf("mark opaque: %w", err)
			}
			return nil
		}
		if strings.HasPrefix(base, whiteoutMetaPrefix) {
			return nil
		}
		name := strings.TrimPrefix(base, whiteoutPrefix)
		if name == "" || name == "." || name == ".." {
			return fmt.Errorf("invalid whiteout name")
		}
		fd, err := u.openDir(parentRel, true)
		if err != nil {
			return err
		}
		if err := u.touch(path.Join(parentRel, name)); err != nil {
			return err
		}
		u.use(path.Join(parentRel, name))
		if err := u.removeExisting(fd, name, path.Join(parentRel, name)); err != nil {
			return err
		}
		if err := unix.Mknodat(fd, name, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("create whiteout: %w", err)
		}
		return setMeta(fd, name, hdr, false, false)
	}

	fd, base, err := u.openParent(rel, true)
	if err != nil {
		return err
	}

	if hdr.Typeflag == tar.TypeDir {
		// Mkdir first: the path is new in nearly every layer, and EEXIST is the cheap way to learn
		// it is not.
		err := unix.Mkdirat(fd, base, 0o700)
		if errors.Is(err, unix.EEXIST) {
			// Files handed out below it were judged by its current owner and mode.
			if err := u.drain(); err != nil {
				return err
			}
			var st unix.Stat_t
			if err = unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("stat: %w", err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				if err := u.removeExisting(fd, base, rel); err != nil {
					return err
				}
				err = unix.Mkdirat(fd, base, 0o700)
			}
		}
		if err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
		return u.applyDirMeta(rel, hdr)
	}

	// Each create below fails with EEXIST when an earlier entry used the path: in a tar the later
	// entry wins, so the old one is removed and the create retried once.
	create := func(mk func() error) error {
		err := mk()
		if errors.Is(err, unix.EEXIST) {
			if err := u.removeExisting(fd, base, rel); err != nil {
				return err
			}
			err = mk()
		}
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse:
		// Created with its final permissions when the umask leaves them whole, so no fchmod is
		// needed; the metadata goes through the open descriptor rather than a path lookup.
		perm, modeDone := uint32(0o600), u.modeAsCreated(hdr)
		owned := u.ownedAsCreated(parentOf(rel), hdr)
		if handed, err := u.handOff(fd, base, rel, fresh, hdr, r, owned, modeDone); handed {
			return err
		}
		if modeDone {
			perm = uint32(hdr.Mode)
		}
		var f int
		err := create(func() (err error) {
			f, err = unix.Openat(fd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
			return err
		})
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		err = u.writeAll(f, r)
		if err != nil {
			err = fmt.Errorf("write: %w", err)
		} else {
			err = fileMeta(f, hdr, owned, modeDone)
		}
		if cerr := unix.Close(f); err == nil && cerr != nil {
			err = fmt.Errorf("write: %w", cerr)
		}
		return err
	case tar.TypeSymlink:
		if err := create(func() error { return unix.Symlinkat(hdr.Linkname, fd, base) }); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		return setMeta(fd, base, hdr, true, u.ownedAsCreated(parentOf(rel), hdr))
	case tar.TypeLink:
		target, err := cleanName(hdr.Linkname)
		if err != nil || target == "" {
			return fmt.Errorf("hardlink target %q is outside the layer", hdr.Linkname)
		}
		if err := u.touch(target); err != nil {
			return err
		}
		tfd, tbase, err := u.openParent(target, false)
		if err != nil {
			return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
		}
		if err := create(func() error { return unix.Linkat(tfd, tbase, fd, base, 0) }); err != nil {
			return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, err)
		}
		// A hardlink shares the target's inode, so applying metadata again would only rewrite it.
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		if hdr.Typeflag != tar.TypeFifo && userns.Running() {
			// A user namespace cannot create device nodes; containerd's unpacker skips them
			// there too. The layer record keeps them, so an export still carries them.
			return nil
		}
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := create(func() error { return unix.Mknodat(fd, base, mode|0o600, dev) }); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	return setMeta(fd, base, hdr, false, false)
}

// parentOf is the relative path of rel's directory, "" for the root.
func parentOf(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// removeExisting makes room for an entry whose path an earlier entry already used: in a tar the
// later entry wins. A removed directory takes its cached descriptors (and its descendants') with
// it; fd, its parent, stays valid.
func (u *unpacker) removeExisting(fd int, base, rel string) error {
	// A directory's removal takes whatever the writers are creating below it.
	if err := u.drain(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat existing: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(fd, base, 0); err != nil {
			return fmt.Errorf("replace existing: %w", err)
		}
		return nil
	}
	// os.RemoveAll walks with *at calls and never follows symlinks; the parents of rel were
	// just verified to be real directories.
	for k, dfd := range u.dirs {
		if k == rel || strings.HasPrefix(k, rel+"/") {
			unix.Close(dfd)
			delete(u.dirs, k)
		}
	}
	// The headers of the removed directories no longer describe anything: a path among them that
	// is made again gets its own header, or is a missing parent (root-owned, times left alone), or
	// is not a directory at all.
	for k := range u.dirTimes {
		if k == rel || strings.HasPrefix(k, rel+"/") {
			delete(u.dirTimes, k)
			delete(u.dirGids, k)
		}
	}
	if err := os.RemoveAll(path.Join(u.dir, rel)); err != nil {
		return fmt.Errorf("replace existing directory: %w", err)
	}
	return nil
}

func (u *unpacker) applyDirMeta(rel string, hdr *tar.Header) error {
	fd, err := u.openDir(rel, false)
	if err != nil {
		return err
	}
	if err := setMeta(fd, ".", hdr, false, false); err != nil {
		return err
	}
	u.dirTimes[rel] = hdr
	u.dirGids[rel] = hdr.Gid
	if _, ok := hdr.PAXRecords[paxXattrPrefix+aclDefaultXattr]; ok {
		u.acl = true
	}
	return nil
}

// setMeta applies owner (unless owned says it is already right), mode, xattrs and times. Owner
// goes first because chown clears set-id bits.
func setMeta(dirfd int, base string, hdr *tar.Header, symlink, owned bool) error {
	if !owned {
		if err := unix.Fchownat(dirfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return chownError(err, hdr.Uid, hdr.Gid)
		}
	}
	if !symlink {
		if err := unix.Fchmodat(dirfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	err := setXattrs(hdr, func(name string, value []byte) error {
		return unix.Lsetxattr(procPath(dirfd, base), name, value, 0)
	})
	if err != nil {
		return err
	}
	if symlink || hdr.Typeflag != tar.TypeDir {
		return setTimes(dirfd, base, hdr)
	}
	return nil
}

// fileMeta is setMeta for a regular file through its open descriptor f.
func fileMeta(f int, hdr *tar.Header, owned, modeDone bool) error {
	if !owned {
		if err := unix.Fchown(f, hdr.Uid, hdr.Gid); err != nil {
			return chownError(err, hdr.Uid, hdr.Gid)
		}
	}
	if !modeDone {
		if err := unix.Fchmod(f, uint32(hdr.Mode&0o7777)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if err := setXattrs(hdr, func(name string, value []byte) error { return unix.Fsetxattr(f, name, value, 0) }); err != nil {
		return err
	}
	if err := futimens(f, timespecs(hdr)); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// setXattrs applies the xattrs hdr carries, except overlay ones (see Unpack), in name order.
func setXattrs(hdr *tar.Header, set func(name string, value []byte) error) error {
	for _, k := range paxXattrKeys(hdr.PAXRecords) {
		name := strings.TrimPrefix(k, paxXattrPrefix)
		if strings.HasPrefix(name, overlayXattrNS) || strings.HasPrefix(name, userOverlayXattrNS) {
			continue
		}
		if err := set(name, []byte(hdr.PAXRecords[k])); err != nil {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

// futimens sets the times of the open file f: utimensat with a NULL path, which x/sys/unix does
// not offer with nanoseconds.
func futimens(f int, ts *[2]unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(f), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func timespecs(hdr *tar.Header) *[2]unix.Timespec {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return &[2]unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
}

func setTimes(dirfd int, base string, hdr *tar.Header) error {
	ts := timespecs(hdr)
	if err := unix.UtimesNanoAt(dirfd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// finishDirs sets directory times deepest first, after every child has been written.
func (u *unpacker) finishDirs() error {
	rels := make([]string, 0, len(u.dirTimes))
	for rel := range u.dirTimes {
		rels = append(rels, rel)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(rels)))
	for _, rel := range rels {
		if len(u.dirs) > maxOpenDirs {
			u.forgetDirs()
		}
		fd, err := u.openDir(rel, false)
		if err != nil {
			// A later entry may have replaced the directory; its own header then applied.
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("unpack %q: %w", rel, err)
		}
		if err := setTimes(fd, ".", u.dirTimes[rel]); err != nil {
			return fmt.Errorf("unpack %q: %w", rel, err)
		}
	}
	return nil
}

// paxXattrKeys lists m's keys in order, nil without allocating when no key names an xattr (the
// common case: most entries carry no PAX records, or only path and time ones).
func paxXattrKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, paxXattrPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
