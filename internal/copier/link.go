package copier

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/contenthash"
	"github.com/strata-build/strata/internal/fileindex"
)

// Links lets a COPY take each regular file that did not change from an earlier snapshot (the
// one the same step produced last time) by hard link instead of copying its bytes: re-running
// `COPY . .` after a one-file edit then writes one file's bytes, not the context's.
//
// A file is linked only when the result is the file a copy would write: the earlier snapshot's
// index (fileindex) names the same content digest for the same path, and its inode has the
// owner, permission bits and mtime (to the nanosecond) the copy would give, the size selected, no
// xattrs (and the new file would get none), and sits on the same filesystem. Anything else, or any
// error on the way (a missing snapshot, EXDEV, EMLINK, a symlink in the earlier snapshot's path),
// copies the file as before. Files that are part of a hard-link group in the source are always
// copied, so an inode shared with another snapshot appears in this one at one path only, and
// snapshot.Diff (which writes a tar hard link only for an inode met twice in the same upper dir)
// writes the same tar as for a copy. Snapshots are never written to once committed (RUN steps
// write through overlayfs, whose copy-up gives the upper its own inode), so sharing inodes
// between them is safe.
//
// While the copy runs (usually through an overlay, which must not see its upper dir change
// under it), a linked file's path stays empty in the destination; the copier treats it as the
// file it will be, so every later step of the copy decides as in a plain copy (a later write to
// the path replaces it, a directory cannot go over or under it). Finish makes the links once the
// overlay is unmounted: onto the empty path, or over the whiteout the overlay left where the file
// replaced one of a lower layer, which is what a file created through the overlay leaves there
// too. Whatever could make a link fail is checked while copying, when the file can still be
// copied instead: the earlier file's link count and device up front, and whether linking works
// at all here (a mount boundary, a filesystem without hard links) by linking the first file once
// into a scratch directory. Links also records the index of the snapshot being written, for the
// next run.
type Links struct {
	prevFd  int // O_PATH descriptor of the earlier snapshot, -1 when there is none to link from
	prevDir string
	prev    fileindex.Index
	stage   string // scratch directory on the upper dir's filesystem
	stageFd int
	dev     uint64 // device of the scratch directory (and so of the upper dir)
	probed  bool   // a link from the earlier snapshot into the scratch directory worked

	pending map[string]bool // destination paths Finish links
	index   fileindex.Index // the new snapshot's, nil once it cannot be kept

	// The earlier snapshot's directory the last file was found in, kept open: files come in
	// directory order.
	parentRel string
	parentFd  int

	// Linked and LinkedBytes count the files taken from the earlier snapshot.
	Linked      int
	LinkedBytes int64
}

// maxLinks leaves room below every filesystem's hard-link limit (ext4: 65000).
const maxLinks = 1 << 15

// NewLinks prepares linking from the snapshot directory prevDir, whose index is prev (prevDir ""
// or prev nil: nothing to link from, the new index is still recorded). stage is a scratch
// directory to create on the filesystem of the upper dir the copy writes into.
func NewLinks(prevDir string, prev fileindex.Index, stage string) (*Links, error) {
	l := &Links{prevFd: -1, parentFd: -1, stageFd: -1, pending: map[string]bool{}, index: fileindex.Index{}}
	if err := os.Mkdir(stage, 0o700); err != nil {
		return nil, fmt.Errorf("link scratch dir: %w", err)
	}
	l.stage = stage
	fd, err := unix.Open(stage, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(stage)
		return nil, fmt.Errorf("link scratch dir: %w", err)
	}
	l.stageFd = fd
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		l.Close()
		return nil, fmt.Errorf("link scratch dir: %w", err)
	}
	l.dev = st.Dev
	if prevDir == "" || len(prev) == 0 {
		return l, nil
	}
	pfd, err := unix.Open(prevDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return l, nil // gone: copy everything
	}
	if unix.Fstat(pfd, &st) != nil || st.Dev != l.dev {
		unix.Close(pfd) // another filesystem: links would fail with EXDEV
		return l, nil
	}
	l.prevFd, l.prevDir, l.prev = pfd, prevDir, prev
	return l, nil
}

// Close releases the descriptors and removes the scratch directory.
func (l *Links) Close() {
	if l == nil {
		return
	}
	for _, fd := range []*int{&l.prevFd, &l.parentFd, &l.stageFd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	if l.stage != "" {
		os.RemoveAll(l.stage)
	}
}

// Index is the index of the snapshot written: every regular file the copy wrote, linked or
// copied, that is not part of a hard-link group, with its digest. nil when none can be kept.
func (l *Links) Index() fileindex.Index {
	if l == nil || len(l.index) > fileindex.MaxEntries {
		return nil
	}
	return l.index
}

// forget drops what Links knows of full: something else is about to be written there.
func (l *Links) forget(full string) {
	delete(l.pending, full)
	delete(l.index, full)
}

// record notes that full now holds a copy of content d.
func (l *Links) record(full string, d digest.Digest) {
	if l.index == nil || d.Algorithm() != digest.SHA256 {
		return
	}
	if len(l.index) >= fileindex.MaxEntries {
		l.index = nil // too many to keep: the next run copies everything, as without an index
		return
	}
	var sum [32]byte
	if n, err := hex.Decode(sum[:], []byte(d.Encoded())); err != nil || n != len(sum) {
		return
	}
	l.index[full] = sum
}

// openPrevDir opens dir of the earlier snapshot with no symlink anywhere on the way and nothing
// outside the snapshot: an index names the real path of each file, so a path that needs a
// symlink is not the one indexed.
func (l *Links) openPrevDir(dir string) (int, error) {
	return unix.Openat2(l.prevFd, dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
}

// linkable reports whether f can be taken from the earlier snapshot as the file a copy would
// write at full (mode: permission bits after --chmod; uid, gid: owner after --chown; sfi: the
// source's lstat, whose mtime the copy gives).
func (l *Links) linkable(full string, f contenthash.File, sfi fs.FileInfo, mode fs.FileMode, uid, gid int) bool {
	if l.prevFd < 0 {
		return false
	}
	d := f.Digest()
	want, ok := l.prev[full]
	if !ok || d == "" || d.Encoded() != hex.EncodeToString(want[:]) {
		return false
	}
	dir, base := splitPath(full)
	if dir != l.parentRel || l.parentFd < 0 {
		if l.parentFd >= 0 {
			unix.Close(l.parentFd)
			l.parentFd = -1
		}
		fd, err := l.openPrevDir(dir)
		if err != nil {
			return false
		}
		l.parentRel, l.parentFd = dir, fd
	}
	var st unix.Stat_t
	if err := unix.Fstatat(l.parentFd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false
	}
	mt := sfi.ModTime()
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != f.Size || st.Size != sfi.Size() ||
		st.Mode&0o7777 != UnixMode(mode) || int(st.Uid) != uid || int(st.Gid) != gid ||
		st.Mtim.Sec != mt.Unix() || st.Mtim.Nsec != int64(mt.Nanosecond()) ||
		st.Nlink >= maxLinks || st.Dev != l.dev {
		return false
	}
	if hasXattrs(l.prevDir + "/" + full) {
		return false
	}
	if !l.probed {
		// Once: can this process link from the earlier snapshot to where the upper dir is?
		if err := unix.Linkat(l.parentFd, base, l.stageFd, "probe", 0); err != nil {
			unix.Close(l.prevFd)
			l.prevFd = -1
			return false
		}
		unix.Unlinkat(l.stageFd, "probe", 0)
		l.probed = true
	}
	return true
}

func splitPath(full string) (dir, base string) {
	dir, base = path.Split(full)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	return dir, base
}

// Finish links every file left to link into upper (the overlay's upper dir, unmounted, or the
// directory a COPY --link wrote), restoring the times of the directories it adds entries to, so
// upper is what a copy of every file would have left. A path holding anything but nothing or a
// whiteout means something wrote there behind Links' back: that is an error, never a silently
// wrong file.
func (l *Links) Finish(upper string) error {
	if l == nil || len(l.pending) == 0 {
		return nil
	}
	root, err := os.OpenRoot(upper)
	if err != nil {
		return err
	}
	defer root.Close()
	paths := make([]string, 0, len(l.pending))
	for p := range l.pending {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	type dirTimes struct {
		rel          string
		atime, mtime time.Time
	}
	var touched []dirTimes
	seen := map[string]bool{}
	var up *os.File
	prevFd, curRel := -1, ""
	defer func() {
		if up != nil {
			up.Close()
		}
		if prevFd >= 0 {
			unix.Close(prevFd)
		}
	}()
	for _, p := range paths {
		dir, base := splitPath(p)
		if up == nil || dir != curRel {
			if up != nil {
				up.Close()
				up = nil
			}
			if prevFd >= 0 {
				unix.Close(prevFd)
			}
			if prevFd, err = l.openPrevDir(dir); err != nil {
				return fmt.Errorf("link unchanged file %q: %w", p, err)
			}
			if up, err = root.Open(dir); err != nil {
				return fmt.Errorf("link unchanged file %q: %w", p, err)
			}
			curRel = dir
			if !seen[dir] {
				var st unix.Stat_t
				if err := unix.Fstat(int(up.Fd()), &st); err != nil {
					return fmt.Errorf("link unchanged file %q: %w", p, err)
				}
				seen[dir] = true
				touched = append(touched, dirTimes{dir, time.Unix(st.Atim.Unix()), time.Unix(st.Mtim.Unix())})
			}
		}
		err := unix.Linkat(prevFd, base, int(up.Fd()), base, 0)
		if errors.Is(err, unix.EEXIST) {
			var st unix.Stat_t
			if err := unix.Fstatat(int(up.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				return fmt.Errorf("internal error: link unchanged file %q: something else is there", p)
			}
			// The whiteout of a lower layer's file: replace it, as creating the file did.
			if err = unix.Linkat(prevFd, base, l.stageFd, "replace", 0); err == nil {
				err = unix.Renameat(l.stageFd, "replace", int(up.Fd()), base)
			}
		}
		if err != nil {
			return fmt.Errorf("link unchanged file %q: %w", p, err)
		}
		delete(l.pending, p)
	}
	for _, d := range touched {
		if err := root.Chtimes(d.rel, d.atime, d.mtime); err != nil {
			return fmt.Errorf("link unchanged files: %w", err)
		}
	}
	return nil
}

// hasXattrs reports whether the file at p has an extended attribute (the SELinux label, which
// every file on such a host has and a layer never carries, aside), or whether that cannot be told.
func hasXattrs(p string) bool {
	var buf [256]byte
	n, err := unix.Llistxattr(p, buf[:])
	return xattrsIn(buf[:], n, err)
}

func xattrsIn(buf []byte, n int, err error) bool {
	if errors.Is(err, unix.ENOTSUP) {
		return false
	}
	if err != nil {
		return true // ERANGE (many names) or anything else: treat as "has some"
	}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" && name != "security.selinux" {
			return true
		}
	}
	return false
}

// UnixMode is the permission word chmod takes for m (Go's FileMode keeps setuid, setgid and
// sticky in other bits).
func UnixMode(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= unix.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		p |= unix.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		p |= unix.S_ISVTX
	}
	return p
}
