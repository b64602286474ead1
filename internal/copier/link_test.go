package copier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/contenthash"
	"github.com/strata-build/strata/internal/fileindex"
	"github.com/strata-build/strata/internal/snapshot"
)

// describe lists everything a layer or a later step could see of a tree: per path its type,
// permission bits, owner, size, mtime to the nanosecond, content digest or link target, and
// xattrs. Inode numbers and link counts are left out: they are what linking changes.
func describe(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil // the upper dir itself is no layer entry, and nothing sets its times
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		s := fmt.Sprintf("type=%o mode=%o owner=%d:%d size=%d mtime=%d.%09d", st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" sha256=%x", sha256.Sum256(data))
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			s += " -> " + target
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			s += " xattrs=" + strings.Join(names, ",")
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, got, want string) {
	t.Helper()
	g, w := describe(t, got), describe(t, want)
	for p, d := range w {
		if g[p] != d {
			t.Errorf("%s:\n got  %s\n want %s", p, g[p], d)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: extra %s", p, g[p])
		}
	}
}

func ino(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// layerTar is the tar Diff writes for dir.
func layerTar(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := snapshot.Diff(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// linkedCopy copies srcs of src into a new upper dir with Links over prev (an earlier upper and
// its index; "" for none) and returns the dir, its index and how many files were linked.
func linkedCopy(t *testing.T, src string, srcs []string, dest string, opts Options, prev string, prevIdx fileindex.Index) (string, fileindex.Index, int) {
	t.Helper()
	base := t.TempDir()
	upper := filepath.Join(base, "upper")
	if err := os.Mkdir(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := NewLinks(prev, prevIdx, filepath.Join(base, "links"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	opts.Links = l
	mustCopy(t, src, srcs, upper, dest, opts)
	if err := l.Finish(upper); err != nil {
		t.Fatal(err)
	}
	return upper, l.Index(), l.Linked
}

func plainCopy(t *testing.T, src string, srcs []string, dest string, opts Options) string {
	t.Helper()
	upper := filepath.Join(t.TempDir(), "upper")
	if err := os.Mkdir(upper, 0o755); err != nil {
		t.Fatal(err)
	}
	mustCopy(t, src, srcs, upper, dest, opts)
	return upper
}

var fixedTime = time.Unix(1700000000, 123456789)

func linkCtx(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	tree(t, src, map[string]string{
		"a.txt":         "alpha",
		"dir/b.txt":     "bravo",
		"dir/sub/c.txt": "charlie",
		"dir/link":      "->b.txt",
		"empty":         "",
		"h1":            "hard",
	})
	if err := os.Link(filepath.Join(src, "h1"), filepath.Join(src, "h2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "dir/sub/c.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	return src
}

// An unchanged file is the earlier snapshot's inode; a changed one, hard-link groups, symlinks
// and directories are new; and the result is, file for file and tar byte for tar byte, the
// plain copy's.
func TestLinksTakeUnchangedFiles(t *testing.T) {
	src := linkCtx(t)
	opts := Options{FromContext: true, Timestamp: &fixedTime}
	first, idx, n := linkedCopy(t, src, []string{"."}, "/app/", opts, "", nil)
	if n != 0 {
		t.Fatalf("linked %d files with nothing to link from", n)
	}
	var indexed []string
	for p := range idx {
		indexed = append(indexed, p)
	}
	sort.Strings(indexed)
	if got, want := strings.Join(indexed, " "), "app/a.txt app/dir/b.txt app/dir/sub/c.txt app/empty"; got != want {
		t.Fatalf("index lists %q, want %q (no hard-link group, no symlink)", got, want)
	}

	if err := os.WriteFile(filepath.Join(src, "dir/b.txt"), []byte("bravo 2"), 0o644); err != nil {
		t.Fatal(err)
	}
	second, idx2, n := linkedCopy(t, src, []string{"."}, "/app/", opts, first, idx)
	if n != 3 {
		t.Errorf("linked %d files, want 3 (a.txt, c.txt, empty)", n)
	}
	for _, p := range []string{"app/a.txt", "app/dir/sub/c.txt", "app/empty"} {
		if ino(t, filepath.Join(first, p)) != ino(t, filepath.Join(second, p)) {
			t.Errorf("%s was copied, not linked", p)
		}
	}
	for _, p := range []string{"app/dir/b.txt", "app/h1", "app/h2"} {
		if ino(t, filepath.Join(first, p)) == ino(t, filepath.Join(second, p)) {
			t.Errorf("%s shares the earlier snapshot's inode", p)
		}
	}
	if ino(t, filepath.Join(second, "app/h1")) != ino(t, filepath.Join(second, "app/h2")) {
		t.Error("the hard-link group is not a group any more")
	}
	if len(idx2) != len(idx) {
		t.Errorf("second index has %d entries, want %d", len(idx2), len(idx))
	}
	plain := plainCopy(t, src, []string{"."}, "/app/", opts)
	sameTree(t, second, plain)
	if !bytes.Equal(layerTar(t, second), layerTar(t, plain)) {
		t.Error("the linked upper's layer tar differs from the plain copy's")
	}
	// The earlier snapshot is untouched.
	if got := read(t, filepath.Join(first, "app/dir/b.txt")); got != "bravo" {
		t.Errorf("earlier snapshot changed: %q", got)
	}
}

// A file is linked only when the copy would give it the same owner, permission bits and mtime,
// and the earlier inode carries no xattr; otherwise it is copied, and the result is still the
// plain copy's.
func TestLinksOnlyIdenticalMetadata(t *testing.T) {
	src := linkCtx(t)
	opts := Options{FromContext: true, Timestamp: &fixedTime}
	first, idx, _ := linkedCopy(t, src, []string{"."}, "/app/", opts, "", nil)

	check := func(name string, opts Options, wantLinked int) {
		t.Helper()
		got, _, n := linkedCopy(t, src, []string{"."}, "/app/", opts, first, idx)
		if n != wantLinked {
			t.Errorf("%s: linked %d files, want %d", name, n, wantLinked)
		}
		sameTree(t, got, plainCopy(t, src, []string{"."}, "/app/", opts))
	}
	check("same flags", opts, 4)
	o := opts
	o.Chown = &Owner{UID: 1000, GID: 1000}
	check("--chown", o, 0)
	o = opts
	ch, err := ParseChmod("644")
	if err != nil {
		t.Fatal(err)
	}
	o.Chmod = ch
	check("--chmod=644", o, 3) // c.txt was 0755

	// Same content, new mtime: copied.
	if err := os.Chtimes(filepath.Join(src, "a.txt"), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	check("touched", opts, 3)
	// The earlier inode has gained an xattr, or another mode: not taken.
	if err := unix.Lsetxattr(filepath.Join(first, "app/empty"), "user.x", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(first, "app/dir/sub/c.txt"), 0o700); err != nil {
		t.Fatal(err)
	}
	check("earlier inode changed", opts, 1)
	// An index naming other content for a path is not believed over the selection's digest.
	bad := fileindex.Index{}
	for p := range idx {
		bad[p] = [32]byte{1}
	}
	got, _, n := linkedCopy(t, src, []string{"."}, "/app/", opts, first, bad)
	if n != 0 {
		t.Errorf("linked %d files whose index digest differs", n)
	}
	sameTree(t, got, plainCopy(t, src, []string{"."}, "/app/", opts))
}

// Whatever a later write of the same COPY puts at a linked file's path wins, as in a plain copy:
// a second source, a heredoc.
func TestLinksLaterWritesWin(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	tree(t, a, map[string]string{"x": "from a", "y": "y of a", "z": "z"})
	tree(t, b, map[string]string{"x": "from b"})
	for _, d := range []string{a, b} {
		for _, f := range []string{"x", "y", "z"} {
			os.Chtimes(filepath.Join(d, f), fixedTime, fixedTime)
		}
	}
	opts := Options{FromContext: true, Timestamp: &fixedTime}
	run := func(prev string, prevIdx fileindex.Index, links bool) (string, fileindex.Index, int) {
		base := t.TempDir()
		upper := filepath.Join(base, "upper")
		os.Mkdir(upper, 0o755)
		o := opts
		var l *Links
		if links {
			var err error
			if l, err = NewLinks(prev, prevIdx, filepath.Join(base, "links")); err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			o.Links = l
		}
		mustCopy(t, a, []string{"."}, upper, "/d/", o)
		mustCopy(t, b, []string{"."}, upper, "/d/", o)
		if err := WriteFile(upper, "/d/", "z", strings.NewReader("heredoc"), o); err != nil {
			t.Fatal(err)
		}
		if !links {
			return upper, nil, 0
		}
		if err := l.Finish(upper); err != nil {
			t.Fatal(err)
		}
		return upper, l.Index(), l.Linked
	}
	first, idx, _ := run("", nil, true)
	if _, ok := idx["d/z"]; ok {
		t.Error("the heredoc's path is indexed with the overwritten file's digest")
	}
	if got := read(t, filepath.Join(first, "d/x")); got != "from b" {
		t.Fatalf("d/x = %q", got)
	}
	second, _, n := run(first, idx, true)
	if n != 2 { // d/y from a, d/x from b; d/x from a is linked first and then replaced
		t.Errorf("linked %d files, want 2", n)
	}
	sameTree(t, second, func() string { p, _, _ := run("", nil, false); return p }())
	if got := read(t, filepath.Join(second, "d/z")); got != "heredoc" {
		t.Errorf("d/z = %q", got)
	}
}

// A path a file will be linked to is, for the rest of the copy, the file a plain copy would have
// put there: a directory is not copied over it nor created under it, with a plain copy's errors.
func TestLinksPendingPathConflicts(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	tree(t, a, map[string]string{"x": "file x", "y": "file y"})
	tree(t, b, map[string]string{"x/inner": "dir x"})
	tree(t, c, map[string]string{"inner": "under y"})
	opts := Options{FromContext: true, Timestamp: &fixedTime}
	first, idx, _ := linkedCopy(t, a, []string{"."}, "/d/", opts, "", nil)
	try := func(links bool) []string {
		base := t.TempDir()
		upper := filepath.Join(base, "upper")
		os.Mkdir(upper, 0o755)
		o := opts
		if links {
			l, err := NewLinks(first, idx, filepath.Join(base, "links"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			o.Links = l
		}
		mustCopy(t, a, []string{"."}, upper, "/d/", o)
		if links && o.Links.Linked != 2 {
			t.Fatalf("linked %d files, want 2", o.Links.Linked)
		}
		var errs []string
		for _, e := range []error{
			copyT(t, b, []string{"."}, upper, "/d/", o),
			copyT(t, c, []string{"."}, upper, "/d/y/", o),
			Mkdir(upper, "/d/y/sub", o),
		} {
			errs = append(errs, fmt.Sprint(e))
		}
		return errs
	}
	plain, linked := try(false), try(true)
	for i := range plain {
		if plain[i] == "<nil>" || plain[i] != linked[i] {
			t.Errorf("write %d: plain copy: %s; linked: %s", i, plain[i], linked[i])
		}
	}
}

// An earlier snapshot on another filesystem cannot be linked from: everything is copied.
func TestLinksOtherFilesystem(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "links-test-")
	if err != nil {
		t.Skip("no /dev/shm")
	}
	defer os.RemoveAll(shm)
	var a, b unix.Stat_t
	if unix.Stat(shm, &a) != nil || unix.Stat(t.TempDir(), &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm is not another filesystem here")
	}
	src := linkCtx(t)
	opts := Options{FromContext: true, Timestamp: &fixedTime}
	first, idx, _ := linkedCopy(t, src, []string{"."}, "/app/", opts, "", nil)
	prev := filepath.Join(shm, "prev")
	if out, err := runCmd("cp", "-a", first, prev); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	got, _, n := linkedCopy(t, src, []string{"."}, "/app/", opts, prev, idx)
	if n != 0 {
		t.Errorf("linked %d files across filesystems", n)
	}
	sameTree(t, got, plainCopy(t, src, []string{"."}, "/app/", opts))
}

// An earlier snapshot reached through another mount of the same filesystem has the same device
// number, but linking from it fails (EXDEV): the first link, tried while copying, tells, and
// every file is copied.
func TestLinksOtherMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind-mount")
	}
	src := linkCtx(t)
	opts := Options{FromContext: true, Timestamp: &fixedTime}
	first, idx, _ := linkedCopy(t, src, []string{"."}, "/app/", opts, "", nil)
	bind := t.TempDir()
	if err := unix.Mount(first, bind, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	defer unix.Unmount(bind, unix.MNT_DETACH)
	got, _, n := linkedCopy(t, src, []string{"."}, "/app/", opts, bind, idx)
	if n != 0 {
		t.Errorf("linked %d files across mounts", n)
	}
	sameTree(t, got, plainCopy(t, src, []string{"."}, "/app/", opts))
}

// An archive ADD cannot link: Links cannot follow what its members overwrite.
func TestLinksRefuseUnpack(t *testing.T) {
	src := t.TempDir()
	tree(t, src, map[string]string{"f.txt": "x"})
	l, err := NewLinks("", nil, filepath.Join(t.TempDir(), "links"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = copyT(t, src, []string{"f.txt"}, t.TempDir(), "/", Options{FromContext: true, Unpack: true, Links: l})
	if err == nil || !strings.Contains(err.Error(), "archive unpacking") {
		t.Fatalf("err = %v", err)
	}
}

// Through a real overlay, as the solver copies: the placeholders are created in the merged view,
// the links placed in the upper after unmounting, and a later step writing through an overlay
// over the linked snapshot (append, chmod, touch, xattr, delete) leaves both snapshots' inodes as
// they were: overlayfs copies the file up first.
func TestLinksThroughOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for overlayfs")
	}
	src := linkCtx(t)
	opts := Options{FromContext: true, Timestamp: &fixedTime}
	lower := t.TempDir()
	// app/a.txt of the lower layer is replaced: the overlay leaves a whiteout where the link goes.
	tree(t, lower, map[string]string{"app/a.txt": "old", "etc/passwd": "root:x:0:0::/root:/bin/sh\n"})
	overlayCopy := func(prev string, prevIdx fileindex.Index, links bool) (string, fileindex.Index, int) {
		base := t.TempDir()
		upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
		for _, d := range []string{upper, work, merged} {
			os.Mkdir(d, 0o755)
		}
		if err := snapshot.Mount([]string{lower}, upper, work, merged); err != nil {
			t.Fatal(err)
		}
		o := opts
		var l *Links
		if links {
			var err error
			if l, err = NewLinks(prev, prevIdx, filepath.Join(base, "links")); err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			o.Links = l
		}
		err := copyT(t, src, []string{"."}, merged, "/app/", o)
		if uerr := snapshot.Unmount(merged); err == nil {
			err = uerr
		}
		if err != nil {
			t.Fatal(err)
		}
		if !links {
			return upper, nil, 0
		}
		if err := l.Finish(upper); err != nil {
			t.Fatal(err)
		}
		return upper, l.Index(), l.Linked
	}
	first, idx, _ := overlayCopy("", nil, true)
	if err := os.WriteFile(filepath.Join(src, "dir/b.txt"), []byte("bravo 2"), 0o644); err != nil {
		t.Fatal(err)
	}
	second, _, n := overlayCopy(first, idx, true)
	if n != 3 {
		t.Errorf("linked %d files, want 3", n)
	}
	plain, _, _ := overlayCopy("", nil, false)
	sameTree(t, second, plain)
	if !bytes.Equal(layerTar(t, second), layerTar(t, plain)) {
		t.Error("the linked upper's layer tar differs from the plain copy's")
	}

	before1, before2 := describe(t, first), describe(t, second)
	base := t.TempDir()
	upper, work, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, work, merged} {
		os.Mkdir(d, 0o755)
	}
	if err := snapshot.Mount([]string{second, lower}, upper, work, merged); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(merged, "app/a.txt"), os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.WriteString(" appended")
		f.Close()
	}
	for _, e := range []error{
		err,
		os.Chmod(filepath.Join(merged, "app/dir/sub/c.txt"), 0o600),
		os.Chtimes(filepath.Join(merged, "app/empty"), time.Now(), time.Now()),
		unix.Setxattr(filepath.Join(merged, "app/dir/sub/c.txt"), "user.y", []byte("2"), 0),
		os.Truncate(filepath.Join(merged, "app/empty"), 10),
		os.Remove(filepath.Join(merged, "app/a.txt")),
	} {
		if e != nil {
			snapshot.Unmount(merged)
			t.Fatal(e)
		}
	}
	if err := snapshot.Unmount(merged); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string][2]map[string]string{"first": {before1, describe(t, first)}, "second": {before2, describe(t, second)}} {
		for p, d := range c[0] {
			if c[1][p] != d {
				t.Errorf("%s snapshot changed by a write through the overlay: %s\n was %s\n now %s", name, p, d, c[1][p])
			}
		}
	}
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// A selection of n files of about size bytes each in a fresh tree, for the benchmarks.
func benchTree(b *testing.B, n, size int) (string, *contenthash.Selection) {
	b.Helper()
	src := b.TempDir()
	data := make([]byte, 3*size)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	for i := 0; i < n; i++ {
		dir := filepath.Join(src, fmt.Sprintf("pkg%02d/mod%d", i/1000, i/100%10))
		if i%100 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		sz := size/2 + (i*7919)%size
		content := append([]byte(fmt.Sprintf("%08d", i)), data[i%size:i%size+sz]...)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.bin", i%100)), content, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	sel, err := (&contenthash.Source{Root: src}).Select(context.Background(), []string{"."}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return src, sel
}

// BenchmarkCopy20k copies a 20,000-file selection (≈200 MB) into a fresh directory: plain, and
// linked from an earlier copy of the same selection (the one-edit rebuild, every file unchanged).
func BenchmarkCopy20k(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (chown)")
	}
	src, sel := benchTree(b, 20000, 10000)
	work := b.TempDir()
	opts := Options{FromContext: true, Timestamp: &fixedTime}
	prev := filepath.Join(work, "prev")
	os.Mkdir(prev, 0o755)
	l, err := NewLinks("", nil, filepath.Join(work, "prev-links"))
	if err != nil {
		b.Fatal(err)
	}
	o := opts
	o.Links = l
	if err := Copy(context.Background(), src, sel, prev, "/app/", o); err != nil {
		b.Fatal(err)
	}
	if err := l.Finish(prev); err != nil {
		b.Fatal(err)
	}
	idx := l.Index()
	l.Close()
	for _, mode := range []string{"plain", "linked"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := filepath.Join(work, "dst")
				os.RemoveAll(dir)
				os.RemoveAll(filepath.Join(work, "links"))
				os.Mkdir(dir, 0o755)
				b.StartTimer()
				o := opts
				var l *Links
				if mode == "linked" {
					if l, err = NewLinks(prev, idx, filepath.Join(work, "links")); err != nil {
						b.Fatal(err)
					}
					o.Links = l
				}
				if err := Copy(context.Background(), src, sel, dir, "/app/", o); err != nil {
					b.Fatal(err)
				}
				if l != nil {
					if err := l.Finish(dir); err != nil {
						b.Fatal(err)
					}
					if l.Linked != 20000 {
						b.Fatalf("linked %d files", l.Linked)
					}
					l.Close()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/20000, "µs/file")
		})
	}
}
