package remotecache

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cache-mount contents travel as a full tar then deltas (mounttar.go). These tests use real files:
// a round trip must reproduce the tree (modes, owners, sizes, links, mtimes to the nanosecond), a
// delta must hold only what changed, and no tar, however hostile, may touch anything outside the
// directory it is applied to.

// ts returns a distinct timestamp with a non-zero nanosecond part.
func ts(n int) time.Time { return time.Unix(1_700_000_000+int64(n)*1000, 123_456_789+int64(n)) }

func mkdirT(t *testing.T, p string, mode fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask, with setgid/sticky
		t.Fatal(err)
	}
}

func writeFileT(t *testing.T, p, content string, mode fs.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func symlinkT(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func chtimesT(t *testing.T, p string, mtime time.Time) {
	t.Helper()
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func scanT(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	st, _, err := scanDir(dir)
	if err != nil {
		t.Fatalf("scanDir %s: %v", dir, err)
	}
	return st
}

// writeTarT writes a full tar (base nil) or a delta and checks the changed count against the
// entries actually in the tar.
func writeTarT(t *testing.T, dir string, cur, base map[string]fileState) ([]byte, []*tar.Header) {
	t.Helper()
	var buf bytes.Buffer
	changed, err := writeTar(&buf, dir, cur, base)
	if err != nil {
		t.Fatalf("writeTar %s: %v", dir, err)
	}
	hdrs := readTarT(t, buf.Bytes())
	if changed != len(hdrs) {
		t.Errorf("writeTar reported %d changed, the tar holds %d entries", changed, len(hdrs))
	}
	return buf.Bytes(), hdrs
}

func readTarT(t *testing.T, data []byte) []*tar.Header {
	t.Helper()
	var hdrs []*tar.Header
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs
		}
		if err != nil {
			t.Fatalf("reading the written tar: %v", err)
		}
		hdrs = append(hdrs, h)
	}
}

func names(hdrs []*tar.Header) []string {
	var n []string
	for _, h := range hdrs {
		n = append(n, h.Name)
	}
	return n
}

func applyT(t *testing.T, dir string, blobs ...[]byte) {
	t.Helper()
	for i, b := range blobs {
		if err := applyTar(bytes.NewReader(b), dir); err != nil {
			t.Fatalf("applyTar blob %d into %s: %v", i, dir, err)
		}
	}
}

type cmpOpts struct {
	dirMtimes bool // compare directories' mtimes too
}

// compareStates reports every difference between two scans. Symlink mtimes are never compared:
// applyTar cannot set them (os.Root has no Lchtimes), and the delta is computed against the
// scan of the unpacked copy, so they never cause a spurious change.
func compareStates(t *testing.T, what string, got, want map[string]fileState, o cmpOpts) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		g, gok := got[p]
		w, wok := want[p]
		switch {
		case !gok:
			t.Errorf("%s: %s missing", what, p)
			continue
		case !wok:
			t.Errorf("%s: %s unexpected (%c %v)", what, p, g.typ, g.mode)
			continue
		}
		if g.typ != w.typ || g.mode != w.mode || g.uid != w.uid || g.gid != w.gid || g.size != w.size || g.link != w.link {
			t.Errorf("%s: %s is {typ %c mode %v uid %d gid %d size %d link %q}, want {typ %c mode %v uid %d gid %d size %d link %q}",
				what, p, g.typ, g.mode, g.uid, g.gid, g.size, g.link, w.typ, w.mode, w.uid, w.gid, w.size, w.link)
		}
		checkTime := w.typ == tar.TypeReg || (w.typ == tar.TypeDir && o.dirMtimes)
		if checkTime && !g.mtime.Equal(w.mtime) {
			t.Errorf("%s: %s mtime %s, want %s", what, p, g.mtime.Format(time.RFC3339Nano), w.mtime.Format(time.RFC3339Nano))
		}
	}
}

func compareContents(t *testing.T, what, got, want string, st map[string]fileState) {
	t.Helper()
	for p, s := range st {
		if s.typ != tar.TypeReg {
			continue
		}
		g, err := os.ReadFile(filepath.Join(got, p))
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		w, err := os.ReadFile(filepath.Join(want, p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s: %s holds %q, want %q", what, p, g, w)
		}
	}
}

// buildTree makes a tree with nested dirs, several modes, owners, a setgid and a sticky dir,
// relative symlinks (to a file, to a dir, dangling), an empty file and nanosecond mtimes.
func buildTree(t *testing.T, dir string) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }
	mkdirT(t, p("a"), 0o755)
	mkdirT(t, p("a/b"), 0o750)
	mkdirT(t, p("a/b/c"), 0o700)
	mkdirT(t, p("gone"), 0o755)
	mkdirT(t, p("gone/x"), 0o755)
	mkdirT(t, p("sg"), 0o775)
	if err := os.Chown(p("sg"), 0, 4321); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p("sg"), 0o775|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	mkdirT(t, p("sticky"), 0o777|fs.ModeSticky)

	writeFileT(t, p("a/keep.txt"), "keep\n", 0o644, ts(1))
	writeFileT(t, p("a/mod.txt"), "old content\n", 0o644, ts(2))
	writeFileT(t, p("a/del.txt"), "delete me\n", 0o600, ts(3))
	writeFileT(t, p("a/b/c/deep.bin"), strings.Repeat("\x00\x01binary", 1000), 0o640, ts(4))
	writeFileT(t, p("gone/z.txt"), "z\n", 0o644, ts(5))
	writeFileT(t, p("gone/x/y.txt"), "y\n", 0o644, ts(6))
	writeFileT(t, p("tofdir"), "will become a dir\n", 0o644, ts(7))
	writeFileT(t, p("exec.sh"), "#!/bin/sh\necho hi\n", 0o755, ts(8))
	writeFileT(t, p("private"), "secret-ish\n", 0o600, ts(9))
	writeFileT(t, p("sg/in.txt"), "in a setgid dir\n", 0o664, ts(10))
	writeFileT(t, p("empty"), "", 0o644, ts(11))
	writeFileT(t, p("owned"), "someone else's\n", 0o644, ts(12))
	if err := os.Chown(p("owned"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	writeFileT(t, p("suid"), "setuid\n", 0o755, ts(13))
	if err := os.Chmod(p("suid"), 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	symlinkT(t, "a/keep.txt", p("link"))
	symlinkT(t, "../a", p("sg/updir"))
	symlinkT(t, "nowhere/at/all", p("dangling"))
	if err := os.Lchown(p("dangling"), 1111, 2222); err != nil {
		t.Fatal(err)
	}
	// Directory mtimes last, deepest first.
	for i, d := range []string{"a/b/c", "a/b", "a", "gone/x", "gone", "sg", "sticky", "."} {
		chtimesT(t, p(d), ts(100+i))
	}
}

func TestMountTarRoundTrip(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	buildTree(t, src)
	want := scanT(t, src)
	for _, p := range []string{".", "a/b/c/deep.bin", "empty", "link", "sg", "sticky", "owned", "suid", "dangling"} {
		if _, ok := want[p]; !ok {
			t.Fatalf("fixture: scanDir lacks %s", p)
		}
	}
	if want["sg"].mode&fs.ModeSetgid == 0 || want["sticky"].mode&fs.ModeSticky == 0 || want["suid"].mode&fs.ModeSetuid == 0 {
		t.Fatalf("fixture: special bits not set: sg %v sticky %v suid %v", want["sg"].mode, want["sticky"].mode, want["suid"].mode)
	}

	full, hdrs := writeTarT(t, src, want, nil)
	if len(hdrs) != len(want) {
		t.Errorf("full tar holds %d entries, the tree %d: %q", len(hdrs), len(want), names(hdrs))
	}
	for _, h := range hdrs {
		if strings.Contains(h.Name, whiteoutPrefix) {
			t.Errorf("full tar holds a whiteout %s", h.Name)
		}
	}
	// Equal trees give equal bytes.
	again, _ := writeTarT(t, src, scanT(t, src), nil)
	if !bytes.Equal(full, again) {
		t.Error("two full tars of the same unchanged tree differ")
	}

	applyT(t, dst, full)
	got := scanT(t, dst)
	compareStates(t, "round trip", got, want, cmpOpts{dirMtimes: true})
	compareContents(t, "round trip", dst, src, want)
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "a/keep.txt" {
		t.Errorf("link -> %q (%v), want a/keep.txt", l, err)
	}

	// Applying the same full tar again onto the result is idempotent.
	applyT(t, dst, full)
	compareStates(t, "full tar applied twice", scanT(t, dst), want, cmpOpts{dirMtimes: true})
}

// mutate makes the changes the delta test expects: one file modified, one file and one whole
// subdirectory deleted, one file added, one file turned into a directory.
func mutate(t *testing.T, dir string) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }
	writeFileT(t, p("a/mod.txt"), "new content, longer than before\n", 0o644, ts(20))
	if err := os.Remove(p("a/del.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(p("gone")); err != nil {
		t.Fatal(err)
	}
	writeFileT(t, p("a/new.txt"), "added\n", 0o600, ts(21))
	if err := os.Remove(p("tofdir")); err != nil {
		t.Fatal(err)
	}
	mkdirT(t, p("tofdir"), 0o755)
	writeFileT(t, p("tofdir/inner.txt"), "inside the new dir\n", 0o644, ts(22))
}

func TestMountTarDelta(t *testing.T) {
	src := t.TempDir()
	buildTree(t, src)
	base := scanT(t, src)
	full, _ := writeTarT(t, src, base, nil)

	mutate(t, src)
	cur := scanT(t, src)
	delta, hdrs := writeTarT(t, src, cur, base)

	wantEntries := []string{"a/mod.txt", "a/new.txt", "tofdir/", "tofdir/inner.txt", // changed
		".wh.gone", "a/.wh.del.txt"} // whiteouts: only the topmost removed path
	var gotEntries []string
	whiteouts := 0
	for _, h := range hdrs {
		gotEntries = append(gotEntries, h.Name)
		if strings.HasPrefix(filepath.Base(h.Name), whiteoutPrefix) {
			whiteouts++
		}
	}
	sort.Strings(gotEntries)
	sort.Strings(wantEntries)
	if strings.Join(gotEntries, " ") != strings.Join(wantEntries, " ") {
		t.Errorf("delta entries:\n got %q\nwant %q", gotEntries, wantEntries)
	}
	if whiteouts != 2 {
		t.Errorf("delta holds %d whiteouts, want 2", whiteouts)
	}
	for _, h := range hdrs {
		if h.Name == "a/mod.txt" && (h.Size != cur["a/mod.txt"].size || !h.ModTime.Equal(ts(20))) {
			t.Errorf("a/mod.txt header size %d mtime %s, want %d %s", h.Size, h.ModTime, cur["a/mod.txt"].size, ts(20))
		}
		if strings.HasPrefix(filepath.Base(h.Name), whiteoutPrefix) && h.Size != 0 {
			t.Errorf("whiteout %s has size %d", h.Name, h.Size)
		}
	}

	// full then delta onto a fresh directory gives the current tree. Directory mtimes are not
	// compared: by design a directory whose entries changed is not itself in the delta
	// (sameState), so its mtime is the time the delta was applied.
	dst := t.TempDir()
	applyT(t, dst, full, delta)
	got := scanT(t, dst)
	compareStates(t, "full+delta", got, cur, cmpOpts{})
	compareContents(t, "full+delta", dst, src, cur)
	for _, gone := range []string{"gone", "gone/x/y.txt", "a/del.txt"} {
		if _, err := os.Lstat(filepath.Join(dst, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists after the delta (%v)", gone, err)
		}
	}
}

// The way MountSet uses it: the base is the scan of the unpacked copy, the delta is what a build
// changed in that copy, and a third runner applies the chain.
func TestMountTarChainAcrossRunners(t *testing.T) {
	first := t.TempDir()
	buildTree(t, first)
	full, _ := writeTarT(t, first, scanT(t, first), nil)

	second := t.TempDir()
	applyT(t, second, full)
	base := scanT(t, second)
	if _, hdrs := writeTarT(t, second, base, base); len(hdrs) != 0 {
		t.Fatalf("nothing changed, delta holds %q", names(hdrs))
	}
	if _, hdrs := writeTarT(t, second, scanT(t, second), base); len(hdrs) != 0 {
		t.Fatalf("nothing changed (rescanned), delta holds %q", names(hdrs))
	}
	mutate(t, second)
	cur := scanT(t, second)
	delta, hdrs := writeTarT(t, second, cur, base)
	if len(hdrs) != 6 {
		t.Errorf("delta holds %d entries, want 6: %q", len(hdrs), names(hdrs))
	}

	third := t.TempDir()
	applyT(t, third, full, delta)
	compareStates(t, "third runner", scanT(t, third), cur, cmpOpts{})
	compareContents(t, "third runner", third, second, cur)
}

func TestMountTarNoChange(t *testing.T) {
	src := t.TempDir()
	buildTree(t, src)
	base := scanT(t, src)
	var buf bytes.Buffer
	changed, err := writeTar(&buf, src, scanT(t, src), base)
	if err != nil {
		t.Fatal(err)
	}
	if changed != 0 {
		t.Errorf("unchanged tree: writeTar reports %d changed, want 0", changed)
	}
	if hdrs := readTarT(t, buf.Bytes()); len(hdrs) != 0 {
		t.Errorf("unchanged tree: delta holds %q", names(hdrs))
	}
	// Touching only a directory (an entry created and removed) is not a change either.
	tmp := filepath.Join(src, "a", "tmpfile")
	writeFileT(t, tmp, "x", 0o644, ts(1))
	os.Remove(tmp)
	if changed, err := writeTar(io.Discard, src, scanT(t, src), base); err != nil || changed != 0 {
		t.Errorf("directory mtime only: changed %d (%v), want 0", changed, err)
	}
	// A metadata-only change is one: mode, owner, mtime.
	for _, c := range []struct {
		name string
		do   func(p string) error
	}{
		{"chmod", func(p string) error { return os.Chmod(p, 0o600) }},
		{"chown", func(p string) error { return os.Chown(p, 42, 42) }},
		{"touch", func(p string) error { return os.Chtimes(p, ts(50), ts(50)) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := t.TempDir()
			buildTree(t, d)
			b := scanT(t, d)
			if err := c.do(filepath.Join(d, "a", "keep.txt")); err != nil {
				t.Fatal(err)
			}
			_, hdrs := writeTarT(t, d, scanT(t, d), b)
			if got := names(hdrs); len(got) != 1 || got[0] != "a/keep.txt" {
				t.Errorf("delta after %s holds %q, want [a/keep.txt]", c.name, got)
			}
		})
	}
}

// Each change of a path's type between versions applies: the delta replaces what is there.
func TestMountTarTypeChanges(t *testing.T) {
	type step func(t *testing.T, dir string)
	file := func(rel, content string) step {
		return func(t *testing.T, dir string) {
			writeFileT(t, filepath.Join(dir, rel), content, 0o644, ts(len(content)))
		}
	}
	mkdir := func(rel string) step {
		return func(t *testing.T, dir string) { mkdirT(t, filepath.Join(dir, rel), 0o755) }
	}
	link := func(target, rel string) step {
		return func(t *testing.T, dir string) { symlinkT(t, target, filepath.Join(dir, rel)) }
	}
	rm := func(rel string) step {
		return func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, rel)); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name          string
		before, after []step
	}{
		{"file to dir", []step{file("p", "file")}, []step{rm("p"), mkdir("p"), file("p/in", "in")}},
		{"file to symlink", []step{file("p", "file"), file("q", "target")}, []step{rm("p"), link("q", "p")}},
		{"symlink to file", []step{file("q", "target"), link("q", "p")}, []step{rm("p"), file("p", "now a file")}},
		{"symlink retargeted", []step{file("q", "q"), file("r", "r"), link("q", "p")}, []step{rm("p"), link("r", "p")}},
		{"symlink to dir", []step{mkdir("d"), file("d/x", "x"), link("d", "p")}, []step{rm("p"), mkdir("p"), file("p/y", "y")}},
		{"dir to file", []step{mkdir("p"), file("p/x", "x"), mkdir("p/sub"), file("p/sub/y", "y")}, []step{rm("p"), file("p", "now a file")}},
		// The whiteout for p/x must not be applied through the new link p -> e, deleting e/x.
		{"dir to symlink", []step{mkdir("p"), file("p/x", "px"), mkdir("e"), file("e/x", "ex")}, []step{rm("p"), link("e", "p")}},
		{"dir to empty dir", []step{mkdir("p"), file("p/x", "x"), mkdir("p/s")}, []step{rm("p/x"), rm("p/s")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := t.TempDir()
			for _, s := range c.before {
				s(t, src)
			}
			base := scanT(t, src)
			full, _ := writeTarT(t, src, base, nil)
			for _, s := range c.after {
				s(t, src)
			}
			cur := scanT(t, src)
			delta, hdrs := writeTarT(t, src, cur, base)
			t.Logf("delta: %q", names(hdrs))
			dst := t.TempDir()
			applyT(t, dst, full)
			if err := applyTar(bytes.NewReader(delta), dst); err != nil {
				t.Fatalf("applying the delta %q: %v", names(hdrs), err)
			}
			compareStates(t, c.name, scanT(t, dst), cur, cmpOpts{})
			compareContents(t, c.name, dst, src, cur)
		})
	}
}

// A file whose name starts with .wh. is content like any other; the round trip must not turn it
// into a deletion of its namesake.
func TestMountTarWhiteoutLookalikeFile(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeFileT(t, filepath.Join(src, "keep"), "keep", 0o644, ts(1))
	writeFileT(t, filepath.Join(src, ".wh.keep"), "a file named .wh.keep", 0o644, ts(2))
	want := scanT(t, src)
	full, _ := writeTarT(t, src, want, nil)
	applyT(t, dst, full)
	compareStates(t, ".wh. lookalike", scanT(t, dst), want, cmpOpts{})
}

// snapshot records everything under root except the subtree skip: type, mode, owner, mtime and a
// hash of file contents, so any write, chmod, chown, chtimes or removal outside shows up.
func snapshot(t *testing.T, root, skip string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v %d:%d %d", info.Mode(), st.Uid, st.Gid, info.ModTime().UnixNano())
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			desc += " " + hex.EncodeToString(sum[:])
		case info.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type tarEntry struct {
	name, link string
	typ        byte
	mode       int64
	body       string
}

func hostileTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, ModTime: ts(1), Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// No tar, whatever its names, links and whiteouts, creates, changes or removes anything outside
// the directory it is applied to. A failing apply is fine; an escape is not.
func TestMountTarHostileContained(t *testing.T) {
	// base/                      <- "../.." from the target
	//   sentinel
	//   victim/precious
	//   mnt/                     <- ".." from the target
	//     sentinel2
	//     target/                <- applyTar's dir
	base := t.TempDir()
	mnt := filepath.Join(base, "mnt")
	sentinel := filepath.Join(base, "sentinel")
	victim := filepath.Join(base, "victim")
	rootName := fmt.Sprintf("strata-mounttar-escape-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(filepath.Join("/", rootName)) })
	absName := strings.TrimPrefix(filepath.Join(base, "abs-escape"), "/")

	const (
		reg  = tar.TypeReg
		dir  = tar.TypeDir
		sym  = tar.TypeSymlink
		hard = tar.TypeLink
	)
	cases := []struct {
		name      string
		entries   []tarEntry
		mustFail  bool
		notExists []string // absolute paths that must not appear
	}{
		{name: "../escape", entries: []tarEntry{{name: "../escape", typ: reg, body: "x"}}, mustFail: true,
			notExists: []string{filepath.Join(mnt, "escape")}},
		{name: "../../escape", entries: []tarEntry{{name: "../../escape", typ: reg, body: "x"}}, mustFail: true,
			notExists: []string{filepath.Join(base, "escape")}},
		{name: "a/../../escape", entries: []tarEntry{{name: "a/../../escape", typ: reg, body: "x"}}, mustFail: true,
			notExists: []string{filepath.Join(mnt, "escape")}},
		{name: "../ dir", entries: []tarEntry{{name: "../escdir/", typ: dir, mode: 0o777}}, mustFail: true,
			notExists: []string{filepath.Join(mnt, "escdir")}},
		{name: "absolute name", entries: []tarEntry{{name: "/" + absName, typ: reg, body: "x"}},
			notExists: []string{filepath.Join(base, "abs-escape")}},
		{name: "absolute overwrite of the sentinel", entries: []tarEntry{{name: sentinel, typ: reg, body: "pwned"}}},
		{name: "symlink to / then a file through it", entries: []tarEntry{
			{name: "link", typ: sym, link: "/"},
			{name: "link/" + rootName, typ: reg, body: "x"},
		}, notExists: []string{filepath.Join("/", rootName)}},
		{name: "symlink to ../.. then a file through it", entries: []tarEntry{
			{name: "link", typ: sym, link: "../.."},
			{name: "link/escaped", typ: reg, body: "x"},
		}, notExists: []string{filepath.Join(base, "escaped")}},
		{name: "symlink to ../.. then a dir through it", entries: []tarEntry{
			{name: "link", typ: sym, link: "../.."},
			{name: "link/escdir/", typ: dir, mode: 0o777},
			{name: "link/escdir/f", typ: reg, body: "x"},
		}, notExists: []string{filepath.Join(base, "escdir")}},
		{name: "symlink to an absolute outside dir then a file through it", entries: []tarEntry{
			{name: "link", typ: sym, link: base},
			{name: "link/escaped", typ: reg, body: "x"},
		}, notExists: []string{filepath.Join(base, "escaped")}},
		{name: "symlink chain climbing out", entries: []tarEntry{
			{name: "d/", typ: dir, mode: 0o755},
			{name: "d/up", typ: sym, link: ".."},
			{name: "d/up2", typ: sym, link: "up/.."},
			{name: "d/up2/escaped", typ: reg, body: "x"},
		}, notExists: []string{filepath.Join(mnt, "escaped")}},
		{name: "symlink to the sentinel then the same name as a file", entries: []tarEntry{
			{name: "s", typ: sym, link: sentinel},
			{name: "s", typ: reg, body: "pwned"},
		}},
		{name: "relative symlink to the sentinel then the same name as a file", entries: []tarEntry{
			{name: "s", typ: sym, link: "../../sentinel"},
			{name: "s", typ: reg, body: "pwned", mode: 0o777},
		}},
		{name: "symlink to an outside dir then the same name as a dir", entries: []tarEntry{
			{name: "s", typ: sym, link: victim},
			{name: "s/", typ: dir, mode: 0o777},
		}},
		{name: "dir then symlink of the same name (dir times applied last)", entries: []tarEntry{
			{name: "d/", typ: dir, mode: 0o755},
			{name: "d", typ: sym, link: "../.."},
			{name: "e/", typ: dir, mode: 0o755},
			{name: "e", typ: sym, link: base},
		}},
		{name: "hard link to the sentinel then a write", entries: []tarEntry{
			{name: "h", typ: hard, link: sentinel},
			{name: "h", typ: reg, body: "pwned"},
			{name: "h2", typ: hard, link: "../../sentinel"},
		}},
		{name: "whiteout .wh... (the parent)", entries: []tarEntry{{name: ".wh...", typ: reg}}},
		{name: "whiteout ../.wh.sentinel2", entries: []tarEntry{{name: "../.wh.sentinel2", typ: reg}}, mustFail: true},
		{name: "whiteout ../../.wh.sentinel", entries: []tarEntry{{name: "../../.wh.sentinel", typ: reg}}, mustFail: true},
		{name: "whiteout x/../../.wh.victim", entries: []tarEntry{{name: "x/../../.wh.victim", typ: reg}}, mustFail: true},
		{name: "whiteout with an absolute name", entries: []tarEntry{{name: filepath.Join(base, ".wh.sentinel"), typ: reg}}},
		{name: "whiteout through a symlink to ../..", entries: []tarEntry{
			{name: "link", typ: sym, link: "../.."},
			{name: "link/.wh.sentinel", typ: reg},
			{name: "link/.wh.victim", typ: reg},
		}},
		{name: "whiteout through an absolute symlink", entries: []tarEntry{
			{name: "link", typ: sym, link: base},
			{name: "link/.wh.sentinel", typ: reg},
			{name: "link/.wh.victim", typ: reg},
			{name: "link/victim/.wh.precious", typ: reg},
		}},
		{name: "whiteout of .. through a subdir", entries: []tarEntry{
			{name: "d/", typ: dir, mode: 0o755},
			{name: "d/.wh...", typ: reg},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A fresh layout for every case: an escape in one case must not hide or fake another.
			ents, err := os.ReadDir(base)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				if err := os.RemoveAll(filepath.Join(base, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
			os.Remove(filepath.Join("/", rootName))
			writeFileT(t, sentinel, "sentinel\n", 0o600, ts(1))
			mkdirT(t, victim, 0o755)
			writeFileT(t, filepath.Join(victim, "precious"), "precious\n", 0o600, ts(2))
			chtimesT(t, victim, ts(3))
			mkdirT(t, mnt, 0o755)
			writeFileT(t, filepath.Join(mnt, "sentinel2"), "sentinel2\n", 0o600, ts(4))
			target := filepath.Join(mnt, "target")
			mkdirT(t, target, 0o755)
			chtimesT(t, mnt, ts(5))
			chtimesT(t, base, ts(6))
			before := snapshot(t, base, target)

			err = applyTar(bytes.NewReader(hostileTar(t, c.entries)), target)
			t.Logf("applyTar: %v", err)
			if c.mustFail && err == nil {
				t.Errorf("applyTar accepted an entry that leaves the directory")
			}

			after := snapshot(t, base, target)
			for p, d := range before {
				if a, ok := after[p]; !ok {
					t.Errorf("ESCAPE: %s was removed", p)
				} else if a != d {
					t.Errorf("ESCAPE: %s changed:\n before %s\n after  %s", p, d, a)
				}
			}
			for p, d := range after {
				if _, ok := before[p]; !ok {
					t.Errorf("ESCAPE: %s appeared outside the target (%s)", p, d)
				}
			}
			for _, p := range c.notExists {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("ESCAPE: %s exists", p)
				}
			}
			if _, err := os.Lstat(filepath.Join("/", rootName)); err == nil {
				t.Errorf("ESCAPE: /%s exists", rootName)
			}
			if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
				t.Errorf("the target dir itself is gone or replaced: %v", err)
			}
		})
	}
}

// Devices and fifos are not cache content: scanDir skips them and applyTar ignores such entries.
func TestMountTarSkipsSpecialFiles(t *testing.T) {
	src := t.TempDir()
	writeFileT(t, filepath.Join(src, "f"), "f", 0o644, ts(1))
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	st := scanT(t, src)
	if _, ok := st["fifo"]; ok {
		t.Error("scanDir lists a fifo")
	}
	dst := t.TempDir()
	data := hostileTar(t, []tarEntry{
		{name: "null", typ: tar.TypeChar, mode: 0o666},
		{name: "blk", typ: tar.TypeBlock, mode: 0o666},
		{name: "fifo", typ: tar.TypeFifo, mode: 0o666},
		{name: "ok", typ: tar.TypeReg, body: "ok"},
	})
	if err := applyTar(bytes.NewReader(data), dst); err != nil {
		t.Fatal(err)
	}
	got := scanT(t, dst)
	if len(got) != 2 || got["ok"].typ != tar.TypeReg {
		var ps []string
		for p := range got {
			ps = append(ps, p)
		}
		t.Errorf("after applying devices, a fifo and a file: %q, want only . and ok", ps)
	}
}
