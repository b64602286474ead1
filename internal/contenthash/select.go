package contenthash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"
)

// ErrNotFound is what Select's error is (errors.Is) when a source matches nothing.
var ErrNotFound = errors.New("not found")

// notFoundError names the source and where it was looked for.
type notFoundError struct{ what, where string }

func (e *notFoundError) Error() string        { return e.what + ": not found in " + e.where }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

func (s *Source) notFound(what string) error {
	where := s.Where
	if where == "" {
		where = "build context (or excluded by .dockerignore)"
	}
	return &notFoundError{what: what, where: where}
}

// ErrEscapesRoot is wrapped by Select when a source path or a top-level symlink leads outside Root.
var ErrEscapesRoot = errors.New("path escapes the source root")

// Test hooks, set only by tests (never while a Select runs), so the "reads only what it selects"
// property can be asserted by counting rather than by timing.
var (
	hookReadDir func(rel string)
	hookLstat   func(rel string)
	hookHash    func(rel string)
)

// Source is a tree COPY reads from: the build context or a stage's filesystem.
type Source struct {
	Root           string     // context dir, or a mounted stage filesystem
	Ignore         []string   // .dockerignore patterns (context only)
	Owners         bool       // include uid/gid in File and digest (stage sources)
	NormalizePerms bool       // git-like: regular files 0644, or 0755 if any x bit; dirs 0755
	StatCache      *StatCache // nil = hash every selected file
	Where          string     // what Root is, for errors ("stage build"); "" is the build context
	// EmptyWildcards lets a source with wildcards match nothing, as every local COPY/ADD source
	// may in BuildKit (AllowEmptyWildcard); a missing literal source is still ErrNotFound. Off for
	// bind mounts, whose source BuildKit requires to exist.
	EmptyWildcards bool
	// Parents matches sources as COPY --parents does: BuildKit turns them into include patterns,
	// where a "**" component spans any number of directories (none included). Elsewhere "**" is
	// two "*" and matches one name, as filepath.Match does for plain COPY.
	Parents bool
}

// matcher serialises a PatternMatcher: its patterns compile lazily and it is documented as not
// safe for concurrent use, while the walk is parallel.
type matcher struct {
	mu       sync.Mutex
	pm       *patternmatcher.PatternMatcher
	patterns []string // as written, for errors
}

func newMatcher(patterns []string) (*matcher, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, badPattern(patterns, err)
	}
	return &matcher{pm: pm, patterns: patterns}, nil
}

func (m *matcher) match(p string, parent patternmatcher.MatchInfo) (bool, patternmatcher.MatchInfo, error) {
	if m == nil {
		return false, patternmatcher.MatchInfo{}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ok, info, err := m.pm.MatchesUsingParentResults(p, parent)
	if err != nil {
		err = badPattern(m.patterns, err)
	}
	return ok, info, err
}

// badPattern names the pattern behind err. Patterns compile on their first use, and as in
// BuildKit one that does not compile (a dangling "\\", an unclosed "[") fails the build only when a
// path reaches it, so it is found after the fact rather than refused up front.
func badPattern(patterns []string, err error) error {
	for _, p := range patterns {
		// An exception is only compiled once something matched before it.
		probe := []string{p}
		if strings.HasPrefix(p, "!") {
			probe = []string{"*", p}
		}
		one, nerr := patternmatcher.New(probe)
		if nerr == nil {
			_, _, nerr = one.MatchesUsingParentResults("x", patternmatcher.MatchInfo{})
		}
		if nerr != nil {
			return fmt.Errorf("pattern %q: %w", p, nerr)
		}
	}
	return err
}

// mayReinclude reports whether an excluded directory can still contain re-included entries
// ("!dir/keep"), i.e. whether it must be descended into. Like fsutil, a literal exception decides
// by prefix; one with wildcards is assumed to possibly match, which costs a walk, never a file.
func (m *matcher) mayReinclude(dir string) bool {
	if m == nil || !m.pm.Exclusions() {
		return false
	}
	for _, p := range m.pm.Patterns() {
		if !p.Exclusion() {
			continue
		}
		s := p.String()
		if strings.ContainsAny(s, `*?[\`) || strings.HasPrefix(s, dir+"/") {
			return true
		}
	}
	return false
}

type selector struct {
	ctx     context.Context
	src     *Source
	root    string
	ignore  *matcher
	exclude *matcher

	mu sync.Mutex
	// files holds what was selected, a directory's worth per chunk, in walk order, possibly with
	// duplicates; finish joins them once (appending to one slice would copy it at every
	// doubling), then sorts and dedupes.
	files [][]File
	// stats runs beside files (stats[i][j] is files[i][j]'s lstat) only when a stat cache needs
	// them to look digests up: a stage source of a million files would otherwise hold a million.
	stats [][]fileStat
	// named are the ancestors addMatch has already recorded.
	named map[string]bool
	// inodes holds the inode of each selected regular file that has more than one link: few
	// files do, and those are the only ones markHardLinks needs.
	inodes map[string]inode
}

// Select resolves srcs (COPY sources; wildcards use filepath.Match like BuildKit) minus excludes
// (COPY --exclude, matched relative to each matched source) minus .dockerignore, and hashes
// exactly the selected files. Only the directories a source names or a wildcard has to list are
// read; nothing else in Root is touched. A cancelled ctx stops the walk at the next directory
// and the hashing at the next file, so a huge context does not hold up a Ctrl-C.
func (s *Source) Select(ctx context.Context, srcs, excludes []string) (*Selection, error) {
	root, err := filepath.Abs(s.Root)
	if err != nil {
		return nil, fmt.Errorf("resolve source root %q: %w", s.Root, err)
	}
	ign, err := newMatcher(s.Ignore)
	if err != nil {
		return nil, fmt.Errorf("parse .dockerignore patterns: %w", err)
	}
	exc, err := newMatcher(excludes)
	if err != nil {
		return nil, fmt.Errorf("parse --exclude patterns: %w", err)
	}
	sel := &selector{ctx: ctx, src: s, root: root, ignore: ign, exclude: exc, named: map[string]bool{}}

	var matches []Match
	for _, src := range srcs {
		ms, err := sel.expand(src)
		if err != nil {
			return nil, err
		}
		matches = append(matches, ms...)
	}
	for _, m := range matches {
		if err := sel.addMatch(m); err != nil {
			return nil, err
		}
	}
	files, err := sel.finish()
	if err != nil {
		return nil, err
	}
	return &Selection{Matches: matches, Files: files, Digest: computeDigest(matches, files, s.Owners)}, nil
}

// cleanSource turns a COPY source into a root-relative path. A leading "/" means the root and
// ".." stops at the root, as in BuildKit (its copy resolves sources with fs.RootPath), so
// `COPY ../../f /x` copies the context's f (case copy-source-outside-context).
func cleanSource(src string) (string, error) {
	p := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(src)), "/")
	if p == "" {
		p = "."
	}
	return p, nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// containsWildcards is BuildKit's test for whether a source may match nothing: an escaped
// character is not a wildcard, so `COPY foo\* /` still needs a file named "foo*".
// HasWildcards reports whether a COPY source has an unescaped wildcard, i.e. may match several
// entries or none.
func HasWildcards(s string) bool { return containsWildcards(s) }

func containsWildcards(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[':
			return true
		case '\\':
			i++
		}
	}
	return false
}

func (s *selector) abs(rel string) string {
	if rel == "." {
		return s.root
	}
	return filepath.Join(s.root, filepath.FromSlash(rel))
}

func (s *selector) lstat(rel string) (fs.FileInfo, error) {
	if hookLstat != nil {
		hookLstat(rel)
	}
	return os.Lstat(s.abs(rel))
}

func (s *selector) readDir(rel string) ([]os.DirEntry, error) {
	if hookReadDir != nil {
		hookReadDir(rel)
	}
	return os.ReadDir(s.abs(rel))
}

func (s *selector) ignored(rel string) (bool, error) {
	if s.ignore == nil || rel == "." {
		return false, nil
	}
	m, _, err := s.ignore.match(rel, patternmatcher.MatchInfo{})
	if err != nil {
		return false, fmt.Errorf("match %q against .dockerignore: %w", rel, err)
	}
	return m, nil
}

// expand resolves one source to its matches, following top-level symlinks inside the root.
func (s *selector) expand(src string) ([]Match, error) {
	p, err := cleanSource(src)
	if err != nil {
		return nil, err
	}
	named := []string{p}
	if hasMeta(p) {
		if named, err = s.glob(p); err != nil {
			return nil, fmt.Errorf("%q: %w", src, err)
		}
	}
	// Like fsutil, exclude patterns apply below a matched source, relative to it; the match itself
	// is never excluded (fsutil's copy starts each match with no path to test), so
	// `COPY --exclude=b* *.txt /w/` still copies b.txt and `COPY --exclude=* d /d/` creates an
	// empty /d (cases exclude-wildcard-source, exclude-everything).
	var out []Match
	for _, n := range named {
		if s.src.Parents {
			// BuildKit copies a --parents source as an include pattern over its pivot, and
			// the walk does not enter symlinked directories: a path through one is not found
			// (case parents-symlink).
			if through, err := s.throughSymlink(src, n); err != nil {
				return nil, err
			} else if through {
				continue
			}
		}
		target, fi, err := s.resolve(n)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue
		}
		if err != nil {
			if n == p && !hasMeta(p) {
				return nil, err // resolve's errors already name the path
			}
			return nil, fmt.Errorf("%q: %w", src, err)
		}
		if ig, err := s.ignored(target); err != nil {
			return nil, err
		} else if ig && !(fi.IsDir() && s.ignore.mayReinclude(target)) {
			continue
		}
		out = append(out, Match{Pattern: src, Path: n, IsDir: fi.IsDir(), Target: target})
	}
	if len(out) == 0 {
		if !s.src.EmptyWildcards || !containsWildcards(p) {
			return nil, s.src.notFound(fmt.Sprintf("%q", src))
		}
		// BuildKit lists the directory the wildcards start from (or the --parents pivot), so
		// that directory must exist even when nothing in it matches.
		if base := s.wildcardBase(src); base != "." {
			target, fi, err := s.resolve(base)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return nil, s.src.notFound(fmt.Sprintf("%q: %q", src, base))
			}
			if err != nil {
				return nil, err
			}
			if ig, err := s.ignored(target); err != nil {
				return nil, err
			} else if ig && !(fi.IsDir() && s.ignore.mayReinclude(target)) {
				return nil, s.src.notFound(fmt.Sprintf("%q: %q", src, base))
			}
		}
	}
	return out, nil
}

// throughSymlink reports whether a directory between src's --parents pivot (the root without
// one) and the matched path n is a symlink.
func (s *selector) throughSymlink(src, n string) (bool, error) {
	start := 0
	if pivot, _, ok := strings.Cut(src, "/./"); ok {
		p, err := cleanSource(pivot)
		if err != nil {
			return false, err
		}
		if p != "." {
			start = strings.Count(p, "/") + 1
		}
	}
	parts := strings.Split(n, "/")
	for i := start + 1; i < len(parts); i++ {
		fi, err := s.lstat(strings.Join(parts[:i], "/"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return true, nil
		}
	}
	return false, nil
}

// wildcardBase is the directory BuildKit's copy starts from for a source that has wildcards: the
// path before the first component with one (fsutil's ResolveWildcards walks it), or for
// --parents the pivot when it has none (the pattern then filters a copy of the pivot; without a
// "/./" the pivot is the root).
func (s *selector) wildcardBase(src string) string {
	if s.src.Parents {
		pivot, _, ok := strings.Cut(src, "/./")
		if !ok || containsWildcards(pivot) {
			return "."
		}
		p, err := cleanSource(pivot)
		if err != nil {
			return "."
		}
		return p
	}
	p, err := cleanSource(src)
	if err != nil {
		return "."
	}
	var lit []string
	for _, c := range strings.Split(p, "/") {
		if containsWildcards(c) {
			break
		}
		lit = append(lit, c)
	}
	if len(lit) == 0 {
		return "."
	}
	return strings.Join(lit, "/")
}

// glob expands wildcards component by component, listing only the directories a wildcard
// component sits in: `package*.json` reads the root listing and nothing else.
func (s *selector) glob(p string) ([]string, error) {
	cands := []string{"."}
	for _, comp := range strings.Split(p, "/") {
		if s.src.Parents && strings.Contains(comp, "**") {
			return s.globDeep(p, cands)
		}
		if !hasMeta(comp) {
			for i := range cands {
				cands[i] = path.Join(cands[i], comp)
			}
			continue
		}
		if _, err := path.Match(comp, ""); err != nil {
			return nil, fmt.Errorf("bad pattern %q: %w", p, err)
		}
		var next []string
		for _, c := range cands {
			dir, fi, err := s.resolve(c)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if !fi.IsDir() {
				continue
			}
			ents, err := s.readDir(dir)
			if err != nil {
				return nil, fmt.Errorf("list %q: %w", dir, err)
			}
			for _, e := range ents {
				if ok, _ := path.Match(comp, e.Name()); ok {
					next = append(next, path.Join(c, e.Name()))
				}
			}
		}
		cands = next
	}
	return cands, nil
}

// globDeep finishes a --parents pattern from its first "**" component on: it walks the trees
// below the candidates matched so far and tests every path against the whole pattern with
// BuildKit's include-pattern matcher. A matching directory is taken whole, so the walk stops
// there; symlinks are not followed (BuildKit's checksum walk does not follow them either), and
// .dockerignore'd entries are neither matched nor descended into unless an exception may
// re-include something below them.
func (s *selector) globDeep(p string, cands []string) ([]string, error) {
	pm, err := patternmatcher.New([]string{p})
	if err != nil {
		return nil, fmt.Errorf("bad pattern %q: %w", p, err)
	}
	var out []string
	var walk func(named, dir string) error
	walk = func(named, dir string) error {
		ents, err := s.readDir(dir)
		if err != nil {
			return fmt.Errorf("list %q: %w", dir, err)
		}
		for _, e := range ents {
			n, d := path.Join(named, e.Name()), path.Join(dir, e.Name())
			ign, err := s.ignored(d)
			if err != nil {
				return err
			}
			if ign && !(e.IsDir() && s.ignore.mayReinclude(d)) {
				continue
			}
			ok, _, err := pm.MatchesUsingParentResults(n, patternmatcher.MatchInfo{})
			if err != nil {
				return fmt.Errorf("match %q against %q: %w", n, p, err)
			}
			if ok && !ign {
				out = append(out, n)
				continue
			}
			if e.IsDir() {
				if err := walk(n, d); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, c := range cands {
		dir, fi, err := s.resolve(c)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			continue
		}
		if err := walk(c, dir); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// resolve follows every symlink in rel, the last component included, with chroot semantics for
// absolute targets. A relative target climbing above the root is an error: following it would
// read outside the tree whose checksum we are computing.
func (s *selector) resolve(rel string) (string, fs.FileInfo, error) {
	var out []string
	todo := strings.Split(rel, "/")
	hops := 0
	var fi fs.FileInfo
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(out) == 0 {
				return "", nil, fmt.Errorf("%q: %w", rel, ErrEscapesRoot)
			}
			out = out[:len(out)-1]
			continue
		}
		cur := strings.Join(append(slices.Clip(out), c), "/")
		var err error
		fi, err = s.lstat(cur)
		if err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if hops++; hops > 255 {
				return "", nil, fmt.Errorf("%q: %w", rel, syscall.ELOOP)
			}
			t, err := os.Readlink(s.abs(cur))
			if err != nil {
				return "", nil, fmt.Errorf("read link %q: %w", cur, err)
			}
			if strings.HasPrefix(t, "/") {
				out = out[:0]
			}
			todo = append(strings.Split(t, "/"), todo...)
			continue
		}
		if len(todo) > 0 && !fi.IsDir() {
			return "", nil, syscall.ENOTDIR
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		fi, err := s.lstat(".")
		if err != nil {
			return "", nil, fmt.Errorf("stat source root: %w", err)
		}
		return ".", fi, nil
	}
	return strings.Join(out, "/"), fi, nil
}

// add records one selected entry as the compact File it becomes; the stat itself is dropped
// unless the stat cache needs it.
func (s *selector) add(rel string, st fileStat) {
	s.addBatch([]File{s.file(rel, st)}, []fileStat{st})
}

// file is the File an entry with this lstat becomes.
func (s *selector) file(rel string, st fileStat) File {
	f := File{Path: rel, Mode: st.mode, Size: st.size}
	if st.mode.IsDir() {
		f.Size = 0
	}
	if s.src.NormalizePerms {
		f.Mode = normalizePerm(f.Mode)
	}
	if s.src.Owners {
		f.UID, f.GID = int(st.uid), int(st.gid)
	}
	return f
}

// addBatch records files (stats[i] is files[i]'s lstat) under one lock: the walk hands over a
// directory at a time, so the lock is taken per directory, not per file.
func (s *selector) addBatch(files []File, stats []fileStat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files = append(s.files, files)
	if s.src.StatCache != nil {
		s.stats = append(s.stats, stats)
	}
	for i := range stats {
		if st := &stats[i]; st.nlink > 1 && st.mode.IsRegular() {
			if s.inodes == nil {
				s.inodes = map[string]inode{}
			}
			s.inodes[files[i].Path] = inode{st.dev, st.ino}
		}
	}
}

// addMatch records the match, its ancestors (COPY --parents recreates them with their metadata,
// so their mode and owner are part of what is read) and, for a directory, its selected subtree.
func (s *selector) addMatch(m Match) error {
	if m.Target != "." {
		parts := strings.Split(m.Target, "/")
		for i := 1; i <= len(parts); i++ {
			rel := strings.Join(parts[:i], "/")
			s.mu.Lock()
			seen := s.named[rel]
			s.named[rel] = true
			s.mu.Unlock()
			if seen {
				continue
			}
			fi, err := s.lstat(rel)
			if err != nil {
				return fmt.Errorf("stat %q: %w", rel, err)
			}
			s.add(rel, statFromInfo(fi))
		}
	}
	if !m.IsDir {
		return nil
	}
	// The match's own ignore state is derived from its ancestors by the matcher when no parent
	// info is given; its exclude state starts fresh because --exclude is relative to the match.
	var ignInfo patternmatcher.MatchInfo
	if m.Target != "." && s.ignore != nil {
		var err error
		if _, ignInfo, err = s.ignore.match(m.Target, patternmatcher.MatchInfo{}); err != nil {
			return fmt.Errorf("match %q against .dockerignore: %w", m.Target, err)
		}
	}
	w := &walk{s: s, sem: make(chan struct{}, walkers())}
	_, err := w.dir(s.abs(m.Target), true, m.Target, "", ignInfo, patternmatcher.MatchInfo{})
	return err
}

func walkers() int { return min(max(4, 2*runtime.GOMAXPROCS(0)), 32) }

type walk struct {
	s   *selector
	sem chan struct{}
}

// direntBufSize is the getdents buffer of one directory listing: 8 KiB holds a few hundred
// entries, so most directories are read in one or two system calls.
const direntBufSize = 8 << 10

// dir walks one directory, opened as name relative to the directory fd parent (the caller's
// own directory, so the kernel resolves one component, not the whole path; AT_FDCWD and an
// absolute name for the walk's root). It lists it with getdents and lstats each entry with
// fstatat on the directory's fd: no os.FileInfo, DirEntry or absolute path is made per file,
// only the relative path the File keeps. It returns whether anything below it was selected, so
// an excluded directory that only holds re-included entries is still recorded (it is created by
// the copy).
func (w *walk) dir(abs string, follow bool, rel, exRel string, ignInfo, exInfo patternmatcher.MatchInfo) (bool, error) {
	if err := w.s.ctx.Err(); err != nil {
		return false, err
	}
	if hookReadDir != nil {
		hookReadDir(rel)
	}
	fd, err := openDir(abs, follow)
	if err != nil {
		return false, fmt.Errorf("list %q: %w", rel, err)
	}
	l := &listing{fd: fd, rel: rel, exRel: exRel, ignInfo: ignInfo, exInfo: exInfo}
	err = w.list(l)
	// The directory is closed before its subdirectories are walked, so a deep tree holds one
	// descriptor per active walker, not one per level.
	unix.Close(fd)
	if err != nil {
		return false, err
	}
	w.s.addBatch(l.files, l.stats)
	for _, sub := range l.subdirs {
		w.descend(l, sub)
	}
	l.wg.Wait()
	return l.selected, l.err
}

// list reads the directory l.fd with getdents and handles each entry.
func (w *walk) list(l *listing) error {
	buf := make([]byte, direntBufSize)
	for {
		n, err := unix.Getdents(l.fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("list %q: %w", l.rel, err)
		}
		if n <= 0 {
			return nil
		}
		for off := 0; off < n; {
			ent, reclen, ok := parseDirent(buf[off:n])
			if !ok {
				return fmt.Errorf("list %q: malformed directory entry", l.rel)
			}
			off += reclen
			if ent.name == "." || ent.name == ".." || ent.ino == 0 {
				continue
			}
			if err := w.entry(l, ent); err != nil {
				return err
			}
		}
	}
}

// subdir is a directory entry the walk must descend into once its parent is listed.
type subdir struct {
	child, exChild string
	ignInfo        patternmatcher.MatchInfo
	exInfo         patternmatcher.MatchInfo
	skipped        bool // ignored or excluded itself, walked only for re-included entries
}

// descend walks sub, in a new goroutine when the pool has room.
func (w *walk) descend(l *listing, sub subdir) {
	s := w.s
	run := func() {
		below, err := w.dir(s.abs(sub.child), false, sub.child, sub.exChild, sub.ignInfo, sub.exInfo)
		if err != nil {
			l.fail(err)
			return
		}
		if below && sub.skipped {
			fi, err := s.lstat(sub.child)
			if err != nil {
				l.fail(fmt.Errorf("stat %q: %w", sub.child, err))
				return
			}
			s.add(sub.child, statFromInfo(fi))
		}
		if below {
			l.markSelected()
		}
	}
	select {
	case w.sem <- struct{}{}:
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-w.sem }()
			run()
		}()
	default:
		// Pool is busy: walk inline rather than block, so a deep tree cannot deadlock.
		run()
	}
}

// listing is the state of one directory being walked, shared with the goroutines walking its
// subdirectories.
type listing struct {
	fd              int
	rel, exRel      string
	ignInfo, exInfo patternmatcher.MatchInfo
	wg              sync.WaitGroup
	mu              sync.Mutex
	selected        bool
	err             error // the first
	// files and stats are this directory's selected entries, handed to the selector at once.
	files []File
	stats []fileStat
	// subdirs are the directories to walk once the listing is done.
	subdirs []subdir
}

func (l *listing) fail(err error) {
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
}

func (l *listing) markSelected() {
	l.mu.Lock()
	l.selected = true
	l.mu.Unlock()
}

// entry handles one name of the directory l.fd (at l.rel): it matches it against .dockerignore
// and --exclude, lstats it (fstatat on the directory's fd) and records it if selected, and notes
// it for descent if it is a directory.
func (w *walk) entry(l *listing, ent dirent) error {
	s, fd, rel, exRel := w.s, l.fd, l.rel, l.exRel

	// ent.name points into the getdents buffer: child must be a copy.
	var child string
	if rel == "." {
		child = strings.Clone(ent.name)
	} else {
		child = rel + "/" + ent.name
	}
	name := child[len(child)-len(ent.name):] // the same bytes, no second string
	exChild := ""
	if s.exclude != nil {
		exChild = name
		if exRel != "" {
			exChild = exRel + "/" + name
		}
	}
	ign, ci, err := s.ignore.match(child, l.ignInfo)
	if err != nil {
		return fmt.Errorf("match %q against .dockerignore: %w", child, err)
	}
	exc, ce, err := s.exclude.match(exChild, l.exInfo)
	if err != nil {
		return fmt.Errorf("match %q against --exclude: %w", exChild, err)
	}
	var isDir bool
	if ign || exc {
		isDir = ent.typ == unix.DT_DIR
		if ent.typ == unix.DT_UNKNOWN {
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("stat %q: %w", child, err)
			}
			isDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
		}
		// Skipped without an lstat unless an exception might re-include something below.
		if !isDir || (ign && !s.ignore.mayReinclude(child)) || (exc && !s.exclude.mayReinclude(exChild)) {
			return nil
		}
	} else {
		if hookLstat != nil {
			hookLstat(child)
		}
		var sys unix.Stat_t
		if err := unix.Fstatat(fd, name, &sys, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat %q: %w", child, err)
		}
		st := statFromUnix(&sys)
		l.files = append(l.files, s.file(child, st))
		l.stats = append(l.stats, st)
		l.markSelected()
		isDir = st.mode.IsDir()
	}
	if isDir {
		l.subdirs = append(l.subdirs, subdir{child: child, exChild: exChild, ignInfo: ci, exInfo: ce, skipped: ign || exc})
	}
	return nil
}

// openDir opens abs as a directory. Below the walk's root it does not follow a symlink in the
// last component: the walk has just lstat'ed it as a directory, and a swap for a symlink in
// between must not lead the walk elsewhere. The root itself may be reached through one (a
// context directory given through a symlink).
func openDir(abs string, follow bool) (int, error) {
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	for {
		fd, err := unix.Open(abs, flags, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: abs, Err: err}
		}
		return fd, nil
	}
}

// dirent is one linux_dirent64 record; name points into the getdents buffer only until the
// next call, so it is copied (once, as part of the child path) before that.
type dirent struct {
	ino  uint64
	typ  uint8
	name string
}

// parseDirent reads the linux_dirent64 at the start of b: d_ino u64, d_off i64, d_reclen u16,
// d_type u8, then the NUL-terminated name.
func parseDirent(b []byte) (dirent, int, bool) {
	const nameOff = 19
	if len(b) < nameOff {
		return dirent{}, 0, false
	}
	reclen := int(binary.NativeEndian.Uint16(b[16:]))
	if reclen < nameOff || reclen > len(b) {
		return dirent{}, 0, false
	}
	nb := b[nameOff:reclen]
	if i := bytes.IndexByte(nb, 0); i >= 0 {
		nb = nb[:i]
	}
	return dirent{
		ino:  binary.NativeEndian.Uint64(b[0:]),
		typ:  b[18],
		name: unsafe.String(unsafe.SliceData(nb), len(nb)),
	}, reclen, true
}

// inode names a file shared by several paths.
type inode struct{ dev, ino uint64 }

// markHardLinks sets HardLink on every selected regular file whose inode an earlier selected
// file has.
func markHardLinks(files []File, inodes map[string]inode) {
	if len(inodes) == 0 {
		return
	}
	first := map[inode]string{}
	for i := range files {
		k, ok := inodes[files[i].Path]
		if !ok || files[i].Mode.Type() != 0 {
			continue
		}
		if p, seen := first[k]; seen {
			files[i].HardLink = p
		} else {
			first[k] = files[i].Path
		}
	}
}

// finish sorts and dedupes the collected Files (overlapping matches select some twice) and
// hashes regular files in a bounded pool (or takes their digest from the stat cache).
func (s *selector) finish() ([]File, error) {
	files, stats := join(s.files), join(s.stats)
	s.files, s.stats = nil, nil
	if stats != nil {
		files, stats = sortFiles(files, stats)
	} else {
		sort.Slice(files, func(i, j int) bool { return pathLess(files[i].Path, files[j].Path) })
		files = slices.CompactFunc(files, func(a, b File) bool { return a.Path == b.Path })
	}
	files = slices.Clip(files)
	markHardLinks(files, s.inodes)

	jobs := make(chan int, 64)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range walkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for i := range jobs {
				if s.ctx.Err() != nil {
					continue // drain: the dispatch loop stops at once
				}
				var st *fileStat
				if stats != nil {
					st = &stats[i]
				}
				if err := s.fill(&files[i], st, buf); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	// Stat cache hits are found here, in one merge pass over the sorted files and the sorted
	// table; only misses and symlinks go to the workers.
	cur := s.src.StatCache.cursor(s.root)
	for i := range files {
		if i%1024 == 0 && s.ctx.Err() != nil {
			break
		}
		t := files[i].Mode.Type()
		if t == 0 && stats != nil {
			if sum, ok := cur.lookup(files[i].Path, &stats[i]); ok {
				files[i].sum, files[i].hashed = sum, true
				continue
			}
		}
		if t == 0 || t == fs.ModeSymlink {
			jobs <- i
		}
	}
	close(jobs)
	wg.Wait()
	if err := s.ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return files, nil
}

// join concatenates chunks into one slice of exactly their total length (nil for none).
func join[T any](chunks [][]T) []T {
	if chunks == nil {
		return nil
	}
	n := 0
	for _, c := range chunks {
		n += len(c)
	}
	out := make([]T, 0, n)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return out
}

// sortFiles sorts files and their stats together in pathLess order and drops repeated paths
// (overlapping matches add some twice).
func sortFiles(files []File, stats []fileStat) ([]File, []fileStat) {
	sort.Sort(byPathWithStats{files, stats})
	w := 0
	for i := range files {
		if i > 0 && files[i].Path == files[w-1].Path {
			continue
		}
		files[w], stats[w] = files[i], stats[i]
		w++
	}
	return files[:w], stats[:w]
}

// byPathWithStats sorts a selection's Files and their stats together.
type byPathWithStats struct {
	files []File
	stats []fileStat
}

func (b byPathWithStats) Len() int           { return len(b.files) }
func (b byPathWithStats) Less(i, j int) bool { return pathLess(b.files[i].Path, b.files[j].Path) }
func (b byPathWithStats) Swap(i, j int) {
	b.files[i], b.files[j] = b.files[j], b.files[i]
	b.stats[i], b.stats[j] = b.stats[j], b.stats[i]
}

// fill reads a symlink's target or hashes a regular file the stat cache could not vouch for,
// recording the sum with st (the file's lstat during the walk) for the next build.
func (s *selector) fill(f *File, st *fileStat, buf []byte) error {
	abs := s.abs(f.Path)
	if f.Mode&fs.ModeSymlink != 0 {
		t, err := os.Readlink(abs)
		if err != nil {
			return fmt.Errorf("read link %q: %w", f.Path, err)
		}
		f.Link = t
		return nil
	}
	start := time.Now()
	sum, err := hashFile(abs, f.Path, f.Size, buf)
	if err != nil {
		return err
	}
	f.sum, f.hashed = sum, true
	if st != nil {
		s.src.StatCache.store(abs, st, sum, start)
	}
	return nil
}

// onlyReader hides os.File's WriterTo, whose generic fallback allocates a fresh 32 KB buffer per
// file: a million small files would churn 32 GB through the allocator.
type onlyReader struct{ io.Reader }

// hashFile hashes the file at abs through buf, checking it still has the size it was selected with.
func hashFile(abs, rel string, size int64, buf []byte) (sum [32]byte, err error) {
	if hookHash != nil {
		hookHash(rel)
	}
	fh, err := os.Open(abs)
	if err != nil {
		return sum, fmt.Errorf("open %q: %w", rel, err)
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, onlyReader{fh}, buf)
	if err != nil {
		return sum, fmt.Errorf("hash %q: %w", rel, err)
	}
	// A file that grew or shrank while being read would give a digest for content that the copy
	// will not see; failing is better than a key that names the wrong bytes.
	if n != size {
		return sum, fmt.Errorf("hash %q: file changed while reading (%d bytes, expected %d)", rel, n, size)
	}
	h.Sum(sum[:0])
	return sum, nil
}
