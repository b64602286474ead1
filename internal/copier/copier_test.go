package copier

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/contenthash"
)

func tree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		abs := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, "/") {
			continue
		}
		if strings.HasPrefix(content, "->") {
			if err := os.Symlink(strings.TrimPrefix(content, "->"), abs); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(abs, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func copyT(t *testing.T, src string, srcs []string, dst, dest string, opts Options) error {
	t.Helper()
	sel, err := (&contenthash.Source{Root: src, Owners: !opts.FromContext}).Select(context.Background(), srcs, nil)
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	return Copy(context.Background(), src, sel, dst, dest, opts)
}

func mustCopy(t *testing.T, src string, srcs []string, dst, dest string, opts Options) {
	t.Helper()
	if err := copyT(t, src, srcs, dst, dest, opts); err != nil {
		t.Fatalf("Copy(%v → %s): %v", srcs, dest, err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func listing(t *testing.T, root string) string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if p != root {
			r, _ := filepath.Rel(root, p)
			out = append(out, r)
		}
		return nil
	})
	return strings.Join(out, ",")
}

var ctx = map[string]string{
	"app/main.js":     "main",
	"app/lib/util.js": "util",
	"app/link":        "->lib/util.js",
	"a.txt":           "a",
	"b.txt":           "b",
	"c.json":          "c",
}

func TestDirContents(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree(t, src, ctx)
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "app/main.js"), old, old)
	mustCopy(t, src, []string{"app"}, dst, "/srv", Options{FromContext: true})
	if got := listing(t, dst); got != "srv,srv/lib,srv/lib/util.js,srv/link,srv/main.js" {
		t.Fatalf("dir copy = %s", got)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "srv/link")); l != "lib/util.js" {
		t.Errorf("symlink not kept: %q", l)
	}
	fi, _ := os.Stat(filepath.Join(dst, "srv/main.js"))
	if !fi.ModTime().Equal(old) {
		t.Errorf("mtime not preserved: %v", fi.ModTime())
	}
	if fi, _ := os.Stat(filepath.Join(dst, "srv")); fi.Mode().Perm() != 0o755 {
		t.Errorf("created dest dir mode %v", fi.Mode())
	}
}

func TestFileDestinations(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree(t, src, ctx)
	os.MkdirAll(filepath.Join(dst, "existing"), 0o755)
	mustCopy(t, src, []string{"a.txt"}, dst, "/existing", Options{FromContext: true})
	mustCopy(t, src, []string{"a.txt"}, dst, "/new/name.txt", Options{FromContext: true})
	mustCopy(t, src, []string{"a.txt"}, dst, "sub/", Options{FromContext: true, Workdir: "/w"})
	mustCopy(t, src, []string{"a.txt", "c.json"}, dst, "/multi/", Options{FromContext: true})
	mustCopy(t, src, []string{"*.txt"}, dst, "/wild/", Options{FromContext: true})
	// Several matches to a name without "/": each is copied there in turn, the last file wins
	// (BuildKit v0.33.1, case copy-wildcard-multi-to-file); into an existing dir they land inside.
	mustCopy(t, src, []string{"*.txt"}, dst, "/last", Options{FromContext: true})
	mustCopy(t, src, []string{"a.txt", "b.txt"}, dst, "/existing", Options{FromContext: true})
	for p, want := range map[string]string{
		"existing/a.txt": "a", "new/name.txt": "a", "w/sub/a.txt": "a",
		"multi/a.txt": "a", "multi/c.json": "c", "wild/a.txt": "a", "wild/b.txt": "b",
		"last": "b", "existing/b.txt": "b",
	} {
		if got := read(t, filepath.Join(dst, p)); got != want {
			t.Errorf("%s = %q", p, got)
		}
	}
	// Overwrite an existing file.
	tree(t, dst, map[string]string{"over.txt": "old"})
	mustCopy(t, src, []string{"b.txt"}, dst, "/over.txt", Options{FromContext: true})
	if read(t, filepath.Join(dst, "over.txt")) != "b" {
		t.Error("existing file not replaced")
	}
}

func TestParents(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree(t, src, ctx)
	os.Chmod(filepath.Join(src, "app/lib"), 0o750)
	mustCopy(t, src, []string{"app/lib/util.js", "a.txt"}, dst, "/p", Options{FromContext: true, Parents: true})
	if got := listing(t, dst); got != "p,p/a.txt,p/app,p/app/lib,p/app/lib/util.js" {
		t.Fatalf("--parents = %s", got)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "p/app/lib")); fi.Mode().Perm() != 0o750 {
		t.Errorf("parent dir metadata not copied: %v", fi.Mode())
	}
	dst2 := t.TempDir()
	mustCopy(t, src, []string{"./app/./lib"}, dst2, "/q/", Options{FromContext: true, Parents: true})
	if got := listing(t, dst2); got != "q,q/lib,q/lib/util.js" {
		t.Fatalf("--parents pivot = %s", got)
	}
}

func TestChmodChown(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree(t, src, ctx)
	os.Lchown(filepath.Join(src, "a.txt"), 1234, 1234)
	mustCopy(t, src, []string{"app"}, dst, "/x/", Options{FromContext: true, Chmod: OctalChmod(0o600), Chown: &Owner{UID: 1000, GID: 2000}})
	for _, p := range []string{"x/main.js", "x/lib"} {
		fi, err := os.Lstat(filepath.Join(dst, p))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o600 || st.Uid != 1000 || st.Gid != 2000 {
			t.Errorf("%s: mode %v owner %d:%d", p, fi.Mode(), st.Uid, st.Gid)
		}
	}
	if st := stat(t, filepath.Join(dst, "x")); st.Uid != 1000 {
		t.Errorf("created dest dir owner %d", st.Uid)
	}
	// Context sources default to root; stage sources keep their owner.
	mustCopy(t, src, []string{"a.txt"}, dst, "/ctx.txt", Options{FromContext: true})
	mustCopy(t, src, []string{"a.txt"}, dst, "/stage.txt", Options{})
	if st := stat(t, filepath.Join(dst, "ctx.txt")); st.Uid != 0 {
		t.Errorf("context owner %d", st.Uid)
	}
	if st := stat(t, filepath.Join(dst, "stage.txt")); st.Uid != 1234 {
		t.Errorf("stage owner %d", st.Uid)
	}
	// setuid survives the chown that would clear it.
	os.Chmod(filepath.Join(src, "b.txt"), 0o755|fs.ModeSetuid)
	mustCopy(t, src, []string{"b.txt"}, dst, "/suid", Options{Chown: &Owner{UID: 5, GID: 5}})
	if fi, _ := os.Stat(filepath.Join(dst, "suid")); fi.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("setuid lost: %v", fi.Mode())
	}
}

func stat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func TestHostileDestSymlinks(t *testing.T) {
	src := t.TempDir()
	tree(t, src, ctx)
	parent := t.TempDir()
	dst := filepath.Join(parent, "rootfs")
	os.MkdirAll(filepath.Join(dst, "etc"), 0o755)
	os.Symlink("/etc", filepath.Join(dst, "app"))
	os.Symlink("../../../../../../../../tmp", filepath.Join(dst, "up"))
	os.Symlink(parent, filepath.Join(dst, "abs"))

	mustCopy(t, src, []string{"a.txt"}, dst, "/app/", Options{FromContext: true})
	if read(t, filepath.Join(dst, "etc/a.txt")) != "a" {
		t.Error("/app -> /etc not followed inside the root")
	}
	mustCopy(t, src, []string{"a.txt"}, dst, "/up/x.txt", Options{FromContext: true})
	if read(t, filepath.Join(dst, "tmp/x.txt")) != "a" {
		t.Error("../.. link not clamped at the root")
	}
	mustCopy(t, src, []string{"app"}, dst, "/abs/", Options{FromContext: true})
	if _, err := os.Stat(filepath.Join(parent, "main.js")); err == nil {
		t.Fatal("wrote outside destRoot")
	}
	if read(t, filepath.Join(dst, parent, "main.js")) != "main" {
		t.Error("absolute link not resolved inside the root")
	}
	// A symlink at a file destination is followed inside the root, as BuildKit does (case
	// copy-dest-symlink-escape): the file lands at its target there, the link stays.
	os.Symlink("/etc/passwd-target", filepath.Join(dst, "final"))
	os.Symlink("../../../../../../../../outside", filepath.Join(dst, "final-up"))
	os.Symlink(filepath.Join(parent, "outside-abs"), filepath.Join(dst, "final-abs"))
	os.Symlink("final-up", filepath.Join(dst, "chain"))
	for dest, want := range map[string]string{
		"/final": "etc/passwd-target", "/final-up": "outside",
		"/final-abs": strings.TrimPrefix(filepath.Join(parent, "outside-abs"), "/"),
	} {
		mustCopy(t, src, []string{"b.txt"}, dst, dest, Options{FromContext: true})
		if fi, err := os.Lstat(filepath.Join(dst, dest)); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("%s: symlink replaced", dest)
		}
		if read(t, filepath.Join(dst, want)) != "b" {
			t.Errorf("%s: not written at %s", dest, want)
		}
	}
	mustCopy(t, src, []string{"a.txt"}, dst, "/chain", Options{FromContext: true})
	if read(t, filepath.Join(dst, "outside")) != "a" {
		t.Error("chain of symlinks not followed")
	}
	// A symlink in a copied tree is replaced, never written through.
	os.MkdirAll(filepath.Join(dst, "tree"), 0o755)
	os.Symlink("/etc/tree-target", filepath.Join(dst, "tree/main.js"))
	mustCopy(t, src, []string{"app"}, dst, "/tree", Options{FromContext: true})
	if fi, _ := os.Lstat(filepath.Join(dst, "tree/main.js")); fi.Mode()&fs.ModeSymlink != 0 {
		t.Error("symlink inside a copied tree written through")
	}
	// So is one at a name joined to a directory destination.
	os.Symlink("/etc/joined-target", filepath.Join(dst, "etc/b.txt"))
	mustCopy(t, src, []string{"b.txt"}, dst, "/etc/", Options{FromContext: true})
	if fi, _ := os.Lstat(filepath.Join(dst, "etc/b.txt")); fi.Mode()&fs.ModeSymlink != 0 {
		t.Error("symlink at a joined name written through")
	}
	if _, err := os.Lstat(filepath.Join(dst, "etc/joined-target")); err == nil {
		t.Error("symlink at a joined name followed")
	}
	// A symlink to a directory as a file destination: the file goes inside the directory.
	os.Symlink("etc", filepath.Join(dst, "todir"))
	mustCopy(t, src, []string{"c.json"}, dst, "/todir", Options{FromContext: true})
	if read(t, filepath.Join(dst, "etc/c.json")) != "c" {
		t.Error("symlink to a directory: file not copied into it")
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 {
		t.Errorf("parent of destRoot touched: %v", entries)
	}
}

func tarGz(t *testing.T, entries []tar.Header, data map[string]string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range entries {
		h.Size = int64(len(data[h.Name]))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data[h.Name]))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestAddUnpack(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	arch := tarGz(t, []tar.Header{
		{Name: "pkg/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "pkg/bin", Typeflag: tar.TypeReg, Mode: 0o755, Uid: 42},
		{Name: "pkg/link", Typeflag: tar.TypeSymlink, Linkname: "bin"},
	}, map[string]string{"pkg/bin": "binary"})
	os.WriteFile(filepath.Join(src, "archive.bin"), arch, 0o644) // detected by content, not name
	os.WriteFile(filepath.Join(src, "plain.gz"), []byte("not an archive"), 0o644)
	mustCopy(t, src, []string{"archive.bin", "plain.gz"}, dst, "/opt/", Options{FromContext: true, Unpack: true})
	if read(t, filepath.Join(dst, "opt/pkg/bin")) != "binary" {
		t.Fatal("archive not unpacked")
	}
	if st := stat(t, filepath.Join(dst, "opt/pkg/bin")); st.Uid != 42 {
		t.Errorf("tar owner not kept: %d", st.Uid)
	}
	if read(t, filepath.Join(dst, "opt/plain.gz")) != "not an archive" {
		t.Error("non-archive not copied")
	}
	if _, err := os.Stat(filepath.Join(dst, "opt/archive.bin")); err == nil {
		t.Error("archive copied as well as unpacked")
	}
	// COPY never unpacks.
	mustCopy(t, src, []string{"archive.bin"}, dst, "/raw", Options{FromContext: true})
	if read(t, filepath.Join(dst, "raw")) != string(arch) {
		t.Error("COPY altered an archive")
	}

	evil := tarGz(t, []tar.Header{{Name: "../../escape", Typeflag: tar.TypeReg}}, nil)
	os.WriteFile(filepath.Join(src, "evil.tgz"), evil, 0o644)
	// ".." stops at the extraction directory, as in BuildKit.
	mustCopy(t, src, []string{"evil.tgz"}, dst, "/e/", Options{FromContext: true, Unpack: true})
	if _, err := os.Stat(filepath.Join(dst, "e/escape")); err != nil {
		t.Errorf("../../escape not clamped into the extraction dir: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "escape")); err == nil {
		t.Error("archive member written outside the destination root")
	}
	evil = tarGz(t, []tar.Header{
		{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"},
		{Name: "l/tmp/pwn", Typeflag: tar.TypeReg},
	}, nil)
	os.WriteFile(filepath.Join(src, "evil2.tgz"), evil, 0o644)
	mustCopy(t, src, []string{"evil2.tgz"}, dst, "/f/", Options{FromContext: true, Unpack: true})
	if _, err := os.Stat(filepath.Join(dst, "f/tmp/pwn")); err != nil {
		t.Errorf("absolute symlink in archive not confined to the extraction dir: %v", err)
	}
}

func TestSourceChangedAfterSelect(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree(t, src, ctx)
	sel, err := (&contenthash.Source{Root: src}).Select(context.Background(), []string{"a.txt"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("z"), 0o644)
	if err := Copy(context.Background(), src, sel, dst, "/a", Options{FromContext: true}); err == nil {
		t.Error("copied content that does not match the checksum")
	}
}

func TestWriteFile(t *testing.T) {
	dst := t.TempDir()
	os.Symlink("/etc", filepath.Join(dst, "app"))
	if err := WriteFile(dst, "app/config", "EOF", strings.NewReader("hello\n"), Options{Workdir: "/", Chown: &Owner{UID: 7, GID: 8}}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dst, "etc/config")
	if read(t, p) != "hello\n" {
		t.Fatal("heredoc content")
	}
	fi, _ := os.Stat(p)
	if st := stat(t, p); fi.Mode().Perm() != 0o644 || st.Uid != 7 || st.Gid != 8 {
		t.Errorf("heredoc mode %v owner %d:%d", fi.Mode(), st.Uid, st.Gid)
	}
	if err := WriteFile(dst, "/dir/", "", strings.NewReader(""), Options{}); err == nil {
		t.Error("directory dest accepted")
	}
	// A file destination that is a symlink is written through inside the root; a name joined
	// to a directory destination is replaced.
	os.Symlink("/nowhere/f", filepath.Join(dst, "link"))
	os.Symlink("/elsewhere", filepath.Join(dst, "etc/h"))
	if err := WriteFile(dst, "/link", "EOF", strings.NewReader("x"), Options{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dst, "/etc/", "h", strings.NewReader("y"), Options{}); err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(dst, "nowhere/f")) != "x" {
		t.Error("heredoc not written through the destination symlink")
	}
	if fi, _ := os.Lstat(filepath.Join(dst, "etc/h")); !fi.Mode().IsRegular() {
		t.Error("joined heredoc name not replaced")
	}
	// A destination that is a directory gets the file's name joined, as BuildKit does.
	if err := WriteFile(dst, "/etc", "named", strings.NewReader("z"), Options{}); err != nil {
		t.Fatal(err)
	}
	if read(t, filepath.Join(dst, "etc/named")) != "z" {
		t.Error("heredoc to an existing directory")
	}
}

func TestChmodSymbolicCopy(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree(t, src, ctx)
	os.Chmod(filepath.Join(src, "app/main.js"), 0o640)
	os.Chmod(filepath.Join(src, "app/lib"), 0o700)
	m, err := ParseChmod("a+X,go-w")
	if err != nil {
		t.Fatal(err)
	}
	mustCopy(t, src, []string{"app"}, dst, "/x/", Options{FromContext: true, Chmod: m})
	want := map[string]fs.FileMode{"x/main.js": 0o644 &^ 0o004, "x/lib": fs.ModeDir | 0o711}
	for p, w := range want {
		fi, err := os.Lstat(filepath.Join(dst, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != w {
			t.Errorf("%s: %v, want %v", p, fi.Mode(), w)
		}
	}
	// A heredoc starts from 0644 and a URL download from 0600 before the edit.
	if err := WriteFile(dst, "/h", "h", strings.NewReader("x"), Options{Chmod: m}); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dst, "/u", "u", strings.NewReader("x"), Options{Chmod: m, FileMode: 0o600}); err != nil {
		t.Fatal(err)
	}
	for p, w := range map[string]fs.FileMode{"h": 0o644, "u": 0o600} {
		if fi, _ := os.Lstat(filepath.Join(dst, p)); fi.Mode() != w {
			t.Errorf("%s: %v, want %v", p, fi.Mode(), w)
		}
	}
}

func TestMkdirOwner(t *testing.T) {
	dst := t.TempDir()
	os.MkdirAll(filepath.Join(dst, "a"), 0o700)
	os.Lchown(filepath.Join(dst, "a"), 7, 7)
	os.Symlink("/a", filepath.Join(dst, "link"))
	if err := Mkdir(dst, "/link/b/c", Options{Chown: &Owner{UID: 1000, GID: 1001}}); err != nil {
		t.Fatal(err)
	}
	for p, w := range map[string][3]uint32{"a": {7, 7, 0o700}, "a/b": {1000, 1001, 0o755}, "a/b/c": {1000, 1001, 0o755}} {
		st := stat(t, filepath.Join(dst, p))
		if st.Uid != w[0] || st.Gid != w[1] || st.Mode&0o7777 != w[2] {
			t.Errorf("%s: %d:%d %o, want %d:%d %o", p, st.Uid, st.Gid, st.Mode&0o7777, w[0], w[1], w[2])
		}
	}
	if err := Mkdir(dst, "rel", Options{Workdir: "/a/b"}); err != nil {
		t.Fatal(err)
	}
	if st := stat(t, filepath.Join(dst, "a/b/rel")); st.Uid != 0 {
		t.Errorf("root-owned workdir: uid %d", st.Uid)
	}
	os.WriteFile(filepath.Join(dst, "file"), nil, 0o644)
	if err := Mkdir(dst, "/file/x", Options{}); err == nil {
		t.Error("Mkdir through a file succeeded")
	}
}

// Files sharing an inode in the source share one in the copy, within one source's copy, as
// BuildKit's copy does (conformance case copy-hardlinks).
func TestHardLinks(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree(t, src, map[string]string{"d/a": "same", "d/sub/x": "x"})
	if err := os.Link(filepath.Join(src, "d/a"), filepath.Join(src, "d/b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "d/a"), filepath.Join(src, "d/sub/c")); err != nil {
		t.Fatal(err)
	}
	mustCopy(t, src, []string{"d"}, dst, "/out/", Options{FromContext: true})
	ino := func(p string) uint64 {
		fi, err := os.Lstat(filepath.Join(dst, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	if a := ino("out/a"); ino("out/b") != a || ino("out/sub/c") != a {
		t.Error("hard links not kept")
	}
	if ino("out/sub/x") == ino("out/a") {
		t.Error("unrelated file linked")
	}
}

// BuildKit keeps the top destination directory's metadata but gives the directories below it
// that already exist the source's (case copy-existing-dir-owner); the existing parents of a
// --parents match only take the source's permission bits.
func TestExistingDirMetadata(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree(t, src, map[string]string{"d/sub/new": "n", "d/top": "t"})
	os.Chmod(filepath.Join(src, "d/sub"), 0o750)
	os.MkdirAll(filepath.Join(dst, "srv/sub"), 0o700)
	os.MkdirAll(filepath.Join(dst, "p/d/sub"), 0o700)
	for _, p := range []string{"srv", "srv/sub", "p", "p/d", "p/d/sub"} {
		os.Chown(filepath.Join(dst, p), 1000, 1000)
		os.Chmod(filepath.Join(dst, p), 0o700)
	}
	mustCopy(t, src, []string{"d"}, dst, "/srv/", Options{FromContext: true})
	mustCopy(t, src, []string{"d/sub/new"}, dst, "/p/", Options{FromContext: true, Parents: true})
	for p, want := range map[string]string{
		"srv": "700 1000", "srv/sub": "750 0", // top kept; below it, the source's
		"p": "700 1000", "p/d": "755 1000", "p/d/sub": "750 1000", // --parents ancestors: mode only
	} {
		fi, _ := os.Lstat(filepath.Join(dst, p))
		st := stat(t, filepath.Join(dst, p))
		if got := strings.TrimPrefix(fmt.Sprintf("%o %d", fi.Mode().Perm(), st.Uid), "0"); got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
	}
}
