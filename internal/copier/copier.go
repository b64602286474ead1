// Package copier performs COPY/ADD: it writes a contenthash.Selection into the writable root of
// the parent filesystem with Docker/BuildKit semantics, resolving every destination path inside
// that root the way the container will see it.
package copier

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
	"unsafe"

	digest "github.com/opencontainers/go-digest"
	"github.com/strata-build/strata/internal/contenthash"
	"github.com/strata-build/strata/internal/userns"
	"golang.org/x/sys/unix"
)

// Owner is a numeric uid/gid pair, already resolved against the image's passwd/group files.
type Owner struct{ UID, GID int }

// Options are the COPY/ADD flags that change what gets written.
type Options struct {
	Chown       *Owner // nil = keep source owner for stage sources; 0:0 for context sources
	Chmod       *Chmod // files and dirs copied (BuildKit --chmod), octal or symbolic
	Parents     bool   // COPY --parents
	Workdir     string // for a relative dest
	Unpack      bool   // ADD: extract local tar archives (detected by content)
	FromContext bool   // source is a context dir: owner defaults to 0:0
	// FileMode is the mode WriteFile gives before Chmod applies: 0 means 0644 (a heredoc);
	// ADD of a URL writes 0600, as BuildKit's HTTP source does.
	FileMode fs.FileMode
	// Timestamp is the mtime given to directories the copy has to create and to heredoc files;
	// nil means now, as BuildKit does. The solver sets it for reproducible layers.
	Timestamp *time.Time
	// Links, when set, takes unchanged regular files from an earlier snapshot by hard link and
	// records the new snapshot's file index (see Links). Only a COPY/ADD step's own layer may use
	// it: never a directory a RUN step can write to (bind or cache mounts), since a write there
	// would reach the earlier snapshot's inodes. Archive unpacking cannot be combined with it.
	Links *Links
}

const defaultDirMode = 0o755

// checkEvery is how many entries Copy puts between looks at its context: a few milliseconds of
// small files, and the look is cheap.
const checkEvery = 64

type copier struct {
	ctx     context.Context
	puts    int // entries put so far, to look at ctx every checkEvery of them
	root    *os.Root
	srcRoot string
	sel     *contenthash.Selection
	opts    Options
	now     time.Time

	dirs  map[string]string // (base, path) key → resolved dir, so each parent is resolved once
	times map[string]time.Time
	// mkdirMode is the mode of the directories the copy has to create (parents, and the
	// destination of a directory source): 0755, or the permission bits of an octal --chmod, as
	// BuildKit's fsutil MkdirAll gets it (case copy-chmod-dir). An archive ADD unpacks into
	// 0755 directories whatever --chmod says (case add-tar-chmod).
	mkdirMode fs.FileMode
	// copied maps a source path to where this match wrote it, so a file that HardLink names as
	// its inode's first becomes a link to that copy. BuildKit links only within one source's
	// copy, hence per match.
	copied map[string]string
	buf    []byte // one copy buffer for every file

	links *Links              // opts.Links
	acls  map[string]bool     // directory → whether it has a default ACL (see inheritsACL)
	subs  map[string]*os.Root // roots of the last directories written to (see at)
	// grouped holds the source paths HardLink names: the first file of each hard-link group,
	// which Links neither links nor indexes (nor the others, whose HardLink is set).
	grouped map[string]bool
}

// Copy copies sel (computed on srcRoot) into destRoot at dest with Docker/BuildKit semantics.
// A cancelled ctx stops it within checkEvery files, with an error; what it wrote so far stays
// (the caller throws the destination away).
func Copy(ctx context.Context, srcRoot string, sel *contenthash.Selection, destRoot, dest string, opts Options) error {
	c, err := newCopier(destRoot, opts)
	if err != nil {
		return err
	}
	c.ctx = ctx
	defer c.close()
	c.srcRoot, c.sel = srcRoot, sel
	if c.links != nil {
		if opts.Unpack {
			for _, m := range sel.Matches {
				if !m.IsDir {
					// An archive would be extracted over placeholders Links cannot track.
					return fmt.Errorf("internal error: copy %q: linking unchanged files cannot be combined with archive unpacking", m.Path)
				}
			}
		}
		c.grouped = map[string]bool{}
		for _, f := range sel.Files {
			if f.HardLink != "" {
				c.grouped[f.HardLink] = true
			}
		}
	}

	destPath, destIsDir := normDest(dest, opts.Workdir)
	// Several matches to a destination not ending in "/" are copied one after the other to that
	// same path, so the last file wins (or each lands inside it when it is a directory), as
	// BuildKit v0.33.1 does (cases copy-multiple-to-file, copy-wildcard-multi-to-file).
	if opts.Parents {
		destIsDir = true
	}
	for _, m := range sel.Matches {
		if err := c.copyMatch(m, destPath, destIsDir); err != nil {
			return fmt.Errorf("copy %q to %q: %w", m.Path, dest, err)
		}
	}
	return c.finish()
}

func newCopier(destRoot string, opts Options) (*copier, error) {
	// Every write goes through os.Root, so even a bug in our own symlink resolution cannot make a
	// write land outside destRoot: the kernel-level check is the backstop.
	r, err := os.OpenRoot(destRoot)
	if err != nil {
		return nil, fmt.Errorf("open destination root: %w", err)
	}
	now := time.Now()
	if opts.Timestamp != nil {
		now = *opts.Timestamp
	}
	return &copier{root: r, opts: opts, now: now, dirs: map[string]string{}, times: map[string]time.Time{}, mkdirMode: defaultDirMode, links: opts.Links}, nil
}

// normDest makes dest relative to the destination root and reports whether it names a directory.
func normDest(dest, workdir string) (string, bool) {
	isDir := dest == "" || dest == "." || strings.HasSuffix(dest, "/") || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		dest = path.Join("/", workdir, dest)
	}
	p := strings.TrimPrefix(path.Clean(dest), "/")
	if p == "" {
		return ".", true
	}
	return p, isDir
}

func (c *copier) copyMatch(m contenthash.Match, destPath string, destIsDir bool) error {
	c.copied = map[string]string{}
	files := c.sel.Under(m.Target)
	if len(files) == 0 && m.Target != "." {
		return fmt.Errorf("%q is not in the selection", m.Target)
	}
	if c.opts.Unpack && !m.IsDir {
		c.mkdirMode = defaultDirMode
		ok, err := c.unpack(m.Target, destPath)
		if err != nil || ok {
			return err
		}
	}
	c.mkdirMode = defaultDirMode
	if ch := c.opts.Chmod; ch != nil && ch.IsOctal() {
		c.mkdirMode = ch.Apply(fs.ModeDir) & fs.ModePerm
	}
	if c.opts.Parents {
		return c.copyParents(m, files, destPath)
	}
	if m.IsDir {
		if _, err := c.dir(".", destPath); err != nil {
			return err
		}
		return c.putTree(m.Target, files, destPath)
	}
	target, err := c.fileTarget(destPath, destIsDir, path.Base(m.Path))
	if err != nil {
		return err
	}
	return c.put(files[0], target, overwriteMeta)
}

// fileTarget is where a file copied to destPath goes. A destination naming a directory ("/"
// at the end) gets the file's name joined, and an entry of that name is replaced, never
// followed. Otherwise destPath is resolved whole, its last component included, as BuildKit's
// fsutil Copy does (continuity RootPath on the destination): a symlink there, or a chain of
// them, is followed inside the root (absolute targets restart at the root, ".." stops there)
// and the file is written at the target, created if the link dangles, while the link stays;
// a destination that resolves to a directory gets the name joined (case
// copy-dest-symlink-file, copy-dest-symlink-escape).
func (c *copier) fileTarget(destPath string, destIsDir bool, name string) (string, error) {
	if destIsDir {
		return path.Join(destPath, name), nil
	}
	r, err := c.resolve(".", destPath)
	if err != nil {
		return "", err
	}
	fi, err := c.lstat(r)
	switch {
	case err == nil && fi.IsDir():
		return path.Join(r, name), nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("stat %q: %w", r, err)
	}
	return r, nil
}

// dirMeta says what put does to a directory that already exists at the destination.
type dirMeta int

const (
	// overwriteMeta gives it the source's owner, mode and times: BuildKit (fsutil
	// copyDirectory) overwrites the metadata of every directory below the copy's top
	// destination directory, which alone keeps its own (case copy-existing-dir-owner).
	overwriteMeta dirMeta = iota
	// chmodOnly sets the source's permission bits, as fsutil's delayed creation of the parents
	// of a --parents match does for one that exists (createParentDirs → copyDirectoryOnly).
	chmodOnly
)

// copyParents implements COPY --parents: the source path (after an optional "/./" pivot) is
// recreated under dest, ancestors included with their own metadata, as BuildKit does.
func (c *copier) copyParents(m contenthash.Match, files []contenthash.File, destPath string) error {
	rel, srcBase := m.Target, ""
	if parent, _, ok := strings.Cut(m.Pattern, "/./"); ok {
		p := path.Clean(strings.TrimLeft(parent, "/"))
		if p != "." {
			if !strings.HasPrefix(rel, p+"/") {
				return fmt.Errorf("pivot %q does not prefix %q", p, rel)
			}
			rel, srcBase = strings.TrimPrefix(rel, p+"/"), p
		}
	}
	if rel == "." {
		return c.putTree(m.Target, files, destPath)
	}
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		anc := path.Join(srcBase, strings.Join(parts[:i], "/"))
		f, ok := c.lookup(anc)
		if !ok {
			f = contenthash.File{Path: anc, Mode: fs.ModeDir | defaultDirMode}
		}
		if err := c.put(f, path.Join(destPath, strings.Join(parts[:i], "/")), chmodOnly); err != nil {
			return err
		}
	}
	target := path.Join(destPath, rel)
	if err := c.put(files[0], target, overwriteMeta); err != nil {
		return err
	}
	if m.IsDir {
		return c.putTree(m.Target, files, target)
	}
	return nil
}

func (c *copier) lookup(p string) (contenthash.File, bool) {
	fs := c.sel.Under(p)
	if len(fs) > 0 && fs[0].Path == p {
		return fs[0], true
	}
	return contenthash.File{}, false
}

// putTree copies the contents of the directory srcDir (not the directory itself: BuildKit copies
// a directory source's contents) to destDir.
func (c *copier) putTree(srcDir string, files []contenthash.File, destDir string) error {
	for _, f := range files {
		if f.Path == srcDir {
			continue
		}
		rel := f.Path
		if srcDir != "." {
			rel = strings.TrimPrefix(f.Path, srcDir+"/")
		}
		if err := c.put(f, path.Join(destDir, rel), overwriteMeta); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) owner(f contenthash.File) (int, int) {
	switch {
	case c.opts.Chown != nil:
		return c.opts.Chown.UID, c.opts.Chown.GID
	case c.opts.FromContext:
		return 0, 0
	default:
		return f.UID, f.GID
	}
}

func (c *copier) defaultOwner() (int, int) {
	if c.opts.Chown != nil {
		return c.opts.Chown.UID, c.opts.Chown.GID
	}
	return 0, 0
}

// put creates one entry at target (root-relative) from the source file f; existingDir says what
// becomes of a directory already there when f is one.
func (c *copier) put(f contenthash.File, target string, existingDir dirMeta) error {
	if c.puts++; c.puts%checkEvery == 0 && c.ctx != nil {
		if err := c.ctx.Err(); err != nil {
			return err
		}
	}
	parent, err := c.dir(".", path.Dir(target))
	if err != nil {
		return err
	}
	full := path.Join(parent, path.Base(target))
	src := filepath.Join(c.srcRoot, filepath.FromSlash(f.Path))
	sfi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("stat source %q: %w", f.Path, err)
	}
	// The selection's checksum is the cache key: copying anything else would store a layer under
	// a key that does not describe it.
	if sfi.Mode().Type() != f.Mode.Type() {
		return fmt.Errorf("source %q changed type since it was checksummed", f.Path)
	}
	existing, err := c.lstat(full)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %q: %w", full, err)
	}
	uid, gid := c.owner(f)
	mode := f.Mode
	if c.opts.Chmod != nil {
		mode = c.opts.Chmod.Apply(f.Mode)
	}

	if f.Mode.IsDir() {
		switch {
		case existing == nil:
			if r, name := c.at(full); r.Mkdir(name, 0o700) != nil {
				if err := c.root.Mkdir(full, 0o700); err != nil {
					return fmt.Errorf("create directory %q: %w", full, err)
				}
			}
		case existing.IsDir():
			// BuildKit merges into an existing directory; below the top destination it takes
			// the source's metadata (see dirMeta).
			c.dirs[dirKey(".", target)] = full
			if existingDir == chmodOnly {
				c.keepTime(full, existing)
				if err := c.root.Chmod(full, f.Mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
					return fmt.Errorf("chmod %q: %w", full, err)
				}
				return nil
			}
			c.times[full] = sfi.ModTime()
			return c.meta(full, mode, uid, gid)
		case existing.Mode()&fs.ModeSymlink != 0:
			r, err := c.dir(".", target)
			if err != nil {
				return err
			}
			c.dirs[dirKey(".", target)] = r
			return nil
		default:
			return fmt.Errorf("cannot copy directory over non-directory %q", full)
		}
		c.dirs[dirKey(".", target)] = full
		c.times[full] = sfi.ModTime()
		return c.meta(full, mode, uid, gid)
	}

	if existing != nil {
		if existing.IsDir() {
			return fmt.Errorf("cannot overwrite directory %q with non-directory", full)
		}
		if err := c.remove(full, existing); err != nil {
			return err
		}
	}
	standalone := c.links != nil && f.Mode.Type() == 0 && f.HardLink == "" && !c.grouped[f.Path]
	if standalone {
		done, err := c.putLinked(f, sfi, parent, full, mode, uid, gid)
		if done || err != nil {
			return err
		}
	}
	switch t := f.Mode.Type(); {
	case t == 0 && c.copied[f.HardLink] != "":
		// Same inode as a file already copied: link to it; owner, mode and times are the
		// inode's and were set with that copy.
		if err := c.root.Link(c.copied[f.HardLink], full); err != nil {
			return fmt.Errorf("hard link %q: %w", full, err)
		}
		return nil
	case t == 0:
		if err := c.copyFile(src, f, full, mode, uid, gid, sfi.ModTime()); err != nil {
			return err
		}
		if standalone {
			c.links.record(full, f.Digest())
		}
		c.copied[f.Path] = full
		if f.HardLink != "" {
			// The inode's first file is outside this match: this copy stands in for it.
			c.copied[f.HardLink] = full
		}
		return nil
	case t == fs.ModeSymlink:
		r, name := c.at(full)
		if err := r.Symlink(f.Link, name); err != nil {
			return fmt.Errorf("create symlink %q: %w", full, err)
		}
		if err := r.Lchown(name, uid, gid); err != nil {
			return fmt.Errorf("chown %q: %w", full, userns.ChownError(err, uid, gid))
		}
		return c.lutimes(parent, path.Base(target), sfi.ModTime())
	case t&fs.ModeSocket != 0 && c.opts.FromContext:
		// BuildKit's context transfer turns a socket into an empty regular file with the
		// socket's permissions (case copy-socket).
		out, err := c.root.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("create %q: %w", full, err)
		}
		if err := out.Close(); err != nil {
			return fmt.Errorf("create %q: %w", full, err)
		}
		mode = mode &^ fs.ModeType
	case t&fs.ModeSocket != 0:
		return nil // a socket cannot be recreated meaningfully from a stage
	default:
		var dev uint64
		if st, ok := sfi.Sys().(*syscall.Stat_t); ok {
			dev = st.Rdev
		}
		if err := c.mknod(parent, path.Base(target), f.Mode, dev); err != nil {
			return err
		}
	}
	if err := c.meta(full, mode, uid, gid); err != nil {
		return err
	}
	if r, name := c.at(full); r.Chtimes(name, sfi.ModTime(), sfi.ModTime()) != nil {
		if err := c.root.Chtimes(full, sfi.ModTime(), sfi.ModTime()); err != nil {
			return fmt.Errorf("set times on %q: %w", full, err)
		}
	}
	return nil
}

// at returns a root on the directory holding full's last element, and that element's name
// there: an operation on one name in it is one system call, where through c.root it opens every
// directory on the path first. The roots of the last directories used stay open, since files
// come directory by directory. An error of the short way is not final: callers retry through
// c.root, which reports it for the whole path as before.
func (c *copier) at(full string) (*os.Root, string) {
	dir, name := path.Split(full)
	if dir == "" || name == "" || name == "." || name == ".." {
		return c.root, full
	}
	dir = dir[:len(dir)-1]
	if r, ok := c.subs[dir]; ok {
		return r, name
	}
	r, err := c.root.OpenRoot(dir)
	if err != nil {
		return c.root, full
	}
	if len(c.subs) >= 16 {
		c.closeSubs()
	}
	if c.subs == nil {
		c.subs = map[string]*os.Root{}
	}
	c.subs[dir] = r
	return r, name
}

// closeSubs closes the roots at keeps; a directory that is removed must not be written to
// through one.
func (c *copier) closeSubs() {
	for _, r := range c.subs {
		r.Close()
	}
	c.subs = nil
}

func (c *copier) close() {
	c.closeSubs()
	c.root.Close()
}

// putLinked leaves f for Links to put at full (in parent) as a link to the earlier snapshot's
// copy, when that copy is the file this one would be; until Finish the path stays empty, and
// c.lstat reports it as the file. It reports false when f must be copied.
func (c *copier) putLinked(f contenthash.File, sfi fs.FileInfo, parent, full string, mode fs.FileMode, uid, gid int) (bool, error) {
	if c.inheritsACL(parent) {
		return false, nil // a new file would get the directory's default ACL, the linked one may not
	}
	if !c.links.linkable(full, f, sfi, mode, uid, gid) {
		return false, nil
	}
	c.links.pending[full] = true
	c.links.record(full, f.Digest())
	c.links.Linked++
	c.links.LinkedBytes += f.Size
	return true, nil
}

// pendingFile is what c.lstat reports for a path Links will put a file at: the regular file a
// plain copy would have created there by now.
type pendingFile struct{ name string }

func (p pendingFile) Name() string       { return p.name }
func (p pendingFile) Size() int64        { return 0 }
func (p pendingFile) Mode() fs.FileMode  { return 0o600 }
func (p pendingFile) ModTime() time.Time { return time.Time{} }
func (p pendingFile) IsDir() bool        { return false }
func (p pendingFile) Sys() any           { return nil }

// lstat is c.root.Lstat, except that a file Links will put in place later is reported as the
// regular file it will be, so the rest of the copy decides as a plain copy would (a directory
// cannot be copied over it, nor made below it; another write replaces it).
func (c *copier) lstat(full string) (fs.FileInfo, error) {
	if c.links != nil {
		if c.links.pending[full] {
			return pendingFile{path.Base(full)}, nil
		}
	}
	r, name := c.at(full)
	if fi, err := r.Lstat(name); err == nil || errors.Is(err, fs.ErrNotExist) {
		return fi, err
	}
	return c.root.Lstat(full)
}

// remove deletes the non-directory existing at full, so something else can be written there.
func (c *copier) remove(full string, existing fs.FileInfo) error {
	if c.links != nil {
		c.links.forget(full)
	}
	if _, ok := existing.(pendingFile); ok {
		return nil
	}
	if r, name := c.at(full); r.Remove(name) == nil {
		return nil
	}
	if err := c.root.Remove(full); err != nil {
		return fmt.Errorf("replace %q: %w", full, err)
	}
	return nil
}

// inheritsACL reports whether files created in the directory parent get a default ACL (or
// whether that cannot be told).
func (c *copier) inheritsACL(parent string) bool {
	if v, ok := c.acls[parent]; ok {
		return v
	}
	has := true
	if d, err := c.root.Open(parent); err == nil {
		_, err := unix.Fgetxattr(int(d.Fd()), "system.posix_acl_default", nil)
		has = !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP)
		d.Close()
	}
	if c.acls == nil {
		c.acls = map[string]bool{}
	}
	c.acls[parent] = has
	return has
}

// copyFile creates full as a copy of the regular file src, checked against the selection's
// digest, with owner uid:gid, mode and mtime (set on the open file where a path is not needed).
func (c *copier) copyFile(src string, f contenthash.File, full string, mode fs.FileMode, uid, gid int, mtime time.Time) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open source %q: %w", f.Path, err)
	}
	defer in.Close()
	r, name := c.at(full)
	out, err := r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		out, err = c.root.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return fmt.Errorf("create %q: %w", full, err)
	}
	h := sha256.New()
	if c.buf == nil {
		c.buf = make([]byte, 64<<10)
	}
	// onlyReader hides os.File's WriterTo: to a MultiWriter it falls back to io.Copy with a
	// fresh 32 KB buffer per file, which for a million small files is 32 GB of garbage.
	_, err = io.CopyBuffer(io.MultiWriter(out, h), onlyReader{in}, c.buf)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q: %w", full, err)
	}
	if want := f.Digest(); want != "" && digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)) != want {
		return fmt.Errorf("source %q changed since it was checksummed", f.Path)
	}
	if err := r.Lchown(name, uid, gid); err != nil {
		return fmt.Errorf("chown %q: %w", full, userns.ChownError(err, uid, gid))
	}
	if err := r.Chmod(name, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return fmt.Errorf("chmod %q: %w", full, err)
	}
	if err := r.Chtimes(name, mtime, mtime); err != nil {
		return fmt.Errorf("set times on %q: %w", full, err)
	}
	return nil
}

type onlyReader struct{ io.Reader }

// meta applies owner then mode: chown clears setuid/setgid, so the order matters.
func (c *copier) meta(full string, mode fs.FileMode, uid, gid int) error {
	r, name := c.at(full)
	if err := r.Lchown(name, uid, gid); err != nil {
		return fmt.Errorf("chown %q: %w", full, userns.ChownError(err, uid, gid))
	}
	if err := r.Chmod(name, mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return fmt.Errorf("chmod %q: %w", full, err)
	}
	return nil
}

// keepTime remembers an existing directory's mtime so it can be restored after entries are added
// to it, as BuildKit does: the layer then only records real metadata changes.
func (c *copier) keepTime(full string, fi fs.FileInfo) {
	if _, ok := c.times[full]; !ok {
		c.times[full] = fi.ModTime()
	}
}

func (c *copier) finish() error {
	// Deepest first is not needed for correctness (changing a child's times does not touch its
	// parent), but sorting makes the order deterministic.
	keys := make([]string, 0, len(c.times))
	for k := range c.times {
		keys = append(keys, k)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(keys)))
	for _, k := range keys {
		if r, name := c.at(k); r.Chtimes(name, c.times[k], c.times[k]) == nil {
			continue
		}
		if err := c.root.Chtimes(k, c.times[k], c.times[k]); err != nil {
			return fmt.Errorf("set times on %q: %w", k, err)
		}
	}
	return nil
}

func dirKey(base, p string) string { return base + "\x00" + p }

// dir returns the real (symlink-free) location of directory p, resolving symlinks as a process
// chrooted at base would and creating missing directories (0755, default owner).
func (c *copier) dir(base, p string) (string, error) {
	p = path.Clean(p)
	if p == "." || p == "/" {
		if base == "." {
			return ".", nil
		}
		return base, nil
	}
	key := dirKey(base, p)
	if r, ok := c.dirs[key]; ok {
		return r, nil
	}
	parent, err := c.dir(base, path.Dir(p))
	if err != nil {
		return "", err
	}
	full := path.Join(parent, path.Base(p))
	fi, err := c.lstat(full)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if r, name := c.at(full); r.Mkdir(name, 0o700) != nil {
			if err := c.root.Mkdir(full, 0o700); err != nil {
				return "", fmt.Errorf("create directory %q: %w", full, err)
			}
		}
		uid, gid := c.defaultOwner()
		if err := c.meta(full, fs.ModeDir|c.mkdirMode, uid, gid); err != nil {
			return "", err
		}
		c.times[full] = c.now
	case err != nil:
		return "", fmt.Errorf("stat %q: %w", full, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		r, err := c.resolve(base, full)
		if err != nil {
			return "", err
		}
		if full, err = c.dir(base, relTo(base, r)); err != nil {
			return "", err
		}
	case fi.IsDir():
		c.keepTime(full, fi)
	default:
		return "", fmt.Errorf("%q: %w", full, syscall.ENOTDIR)
	}
	c.dirs[key] = full
	return full, nil
}

func relTo(base, p string) string {
	if base == "." {
		return p
	}
	if p == base {
		return "."
	}
	return strings.TrimPrefix(p, base+"/")
}

// resolve follows every symlink in p (root-relative, under base) as a process chrooted at base
// would: absolute targets restart at base and ".." stops there. Missing components are kept
// lexically. The result is root-relative.
func (c *copier) resolve(base, p string) (string, error) {
	var out []string
	if base != "." {
		p = relTo(base, p)
	}
	todo := strings.Split(p, "/")
	hops := 0
	join := func(extra ...string) string {
		parts := append(append([]string{base}, out...), extra...)
		return path.Join(parts...)
	}
	for len(todo) > 0 {
		comp := todo[0]
		todo = todo[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		cur := join(comp)
		fi, err := c.root.Lstat(cur)
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if hops++; hops > 255 {
				return "", fmt.Errorf("%q: %w", p, syscall.ELOOP)
			}
			t, err := c.root.Readlink(cur)
			if err != nil {
				return "", fmt.Errorf("read link %q: %w", cur, err)
			}
			if strings.HasPrefix(t, "/") {
				out = out[:0]
			}
			todo = append(strings.Split(t, "/"), todo...)
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("stat %q: %w", cur, err)
		}
		out = append(out, comp)
	}
	return join(), nil
}

func (c *copier) openParent(parent string) (*os.File, error) {
	d, err := c.root.Open(parent)
	if err != nil {
		return nil, fmt.Errorf("open %q: %w", parent, err)
	}
	return d, nil
}

// lutimes sets a symlink's own times; os.Root has no Lchtimes, so use utimensat relative to the
// already-resolved parent directory, which keeps the operation inside the root.
func (c *copier) lutimes(parent, name string, t time.Time) error {
	d, err := c.openParent(parent)
	if err != nil {
		return err
	}
	defer d.Close()
	ts := []syscall.Timespec{syscall.NsecToTimespec(t.UnixNano()), syscall.NsecToTimespec(t.UnixNano())}
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return err
	}
	const atSymlinkNofollow = 0x100
	if _, _, e := syscall.Syscall6(syscall.SYS_UTIMENSAT, d.Fd(), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&ts[0])), atSymlinkNofollow, 0, 0); e != 0 {
		return fmt.Errorf("set times on symlink %q: %w", path.Join(parent, name), e)
	}
	return nil
}

func (c *copier) mknod(parent, name string, m fs.FileMode, dev uint64) error {
	d, err := c.openParent(parent)
	if err != nil {
		return err
	}
	defer d.Close()
	var typ uint32
	switch {
	case m&fs.ModeNamedPipe != 0:
		typ = syscall.S_IFIFO
	case m&fs.ModeCharDevice != 0:
		typ = syscall.S_IFCHR
	default:
		typ = syscall.S_IFBLK
	}
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return err
	}
	if _, _, e := syscall.Syscall6(syscall.SYS_MKNODAT, d.Fd(), uintptr(unsafe.Pointer(p)), uintptr(typ|0o600), uintptr(dev), 0, 0); e != 0 {
		return fmt.Errorf("create special file %q: %w", path.Join(parent, name), e)
	}
	return nil
}

// Mkdir creates directory dir (absolute, or relative to opts.Workdir) and any missing parents for
// WORKDIR, resolving symlinks as the container would. Directories it creates get 0755, the owner
// opts.Chown (root when nil) and opts.Timestamp; directories that exist are left as they are,
// times included, like BuildKit's mkdir with parents (fsutil MkdirAll; testWorkdirUser and
// testWorkdirExists in BuildKit's dockerfile_workdir_test.go).
func Mkdir(destRoot, dir string, opts Options) error {
	c, err := newCopier(destRoot, opts)
	if err != nil {
		return err
	}
	defer c.close()
	p, _ := normDest(dir, opts.Workdir)
	if _, err := c.dir(".", p); err != nil {
		return fmt.Errorf("create directory %q: %w", dir, err)
	}
	return c.finish()
}

// WriteFile writes a heredoc file (COPY <<EOF /dst) or a downloaded one (ADD URL): name is the
// file's own name. A dest ending in "/" is a directory the file goes into, replacing an entry of
// that name; any other dest is resolved whole, as Copy resolves a file destination (BuildKit
// copies these files like any other): through a symlink at dest to its target, and into dest
// when it is a directory. Mode is FileMode (0644), edited by Chmod. The content is streamed from
// r, so a 200 MB heredoc (or downloaded URL) is never copied into a second buffer.
func WriteFile(destRoot, dest, name string, r io.Reader, opts Options) error {
	c, err := newCopier(destRoot, opts)
	if err != nil {
		return err
	}
	defer c.close()
	destPath, isDir := normDest(dest, opts.Workdir)
	if isDir && name == "" {
		return fmt.Errorf("write heredoc: destination %q is a directory, a file name is needed", dest)
	}
	if ch := opts.Chmod; ch != nil && ch.IsOctal() {
		// As for Copy: the parents created take an octal --chmod's bits (case heredoc-chmod-parents).
		c.mkdirMode = ch.Apply(fs.ModeDir) & fs.ModePerm
	}
	target, err := c.fileTarget(destPath, isDir, name)
	if err != nil {
		return fmt.Errorf("write heredoc %q: %w", dest, err)
	}
	parent, err := c.dir(".", path.Dir(target))
	if err != nil {
		return fmt.Errorf("write heredoc %q: %w", dest, err)
	}
	full := path.Join(parent, path.Base(target))
	if fi, err := c.lstat(full); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("write heredoc: cannot overwrite directory %q", full)
		}
		if err := c.remove(full, fi); err != nil {
			return fmt.Errorf("write heredoc: %w", err)
		}
	}
	f, err := c.root.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write heredoc: create %q: %w", full, err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write heredoc %q: %w", full, err)
	}
	mode := fs.FileMode(0o644)
	if opts.FileMode != 0 {
		mode = opts.FileMode
	}
	if opts.Chmod != nil {
		mode = opts.Chmod.Apply(mode)
	}
	uid, gid := c.defaultOwner()
	if err := c.meta(full, mode, uid, gid); err != nil {
		return err
	}
	if err := c.root.Chtimes(full, c.now, c.now); err != nil {
		return fmt.Errorf("set times on %q: %w", full, err)
	}
	return c.finish()
}
