package snapshot

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnpack(t *testing.T) {
	needRoot(t)
	d := t.TempDir()
	hosts := file("etc/hosts", "127.0.0.1 localhost\n")
	hosts.uid, hosts.gid = 1000, 1001
	hosts.xattrs = map[string]string{"user.note": "hi", "trusted.overlay.redirect": "/evil"}
	su := file("bin/su", "#!/bin/sh\n")
	su.mode = 0o4755
	suid := ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3}
	etc := dir("etc/")
	etc.uid, etc.gid, etc.mode = 5, 6, 0o750
	unpackEnts(t, d,
		ent{name: "./", typ: tar.TypeDir, mode: 0o755},
		etc,
		hosts,
		symlink("etc/link", "hosts"),
		hardlink("etc/hard", "etc/hosts"),
		ent{name: "etc/.wh.gone", typ: tar.TypeReg},
		ent{name: "var/.wh..wh..opq", typ: tar.TypeReg},
		ent{name: "var/.wh..wh.plnk", typ: tar.TypeReg}, // aufs bookkeeping: ignored
		ent{name: "fifo", typ: tar.TypeFifo, mode: 0o600},
		su, suid,
		file("replaced", "first"), file("replaced", "second"),
	)

	var st unix.Stat_t
	lstat := func(rel string) *unix.Stat_t {
		t.Helper()
		if err := unix.Lstat(filepath.Join(d, rel), &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	if s := lstat("etc"); s.Mode != unix.S_IFDIR|0o750 || s.Uid != 5 || s.Gid != 6 || s.Mtim.Sec != testTime.Unix() {
		t.Errorf("etc: mode %o owner %d:%d mtime %d", s.Mode, s.Uid, s.Gid, s.Mtim.Sec)
	}
	if s := lstat("etc/hosts"); s.Mode != unix.S_IFREG|0o644 || s.Uid != 1000 || s.Gid != 1001 || s.Nlink != 2 || s.Mtim.Sec != testTime.Unix() {
		t.Errorf("etc/hosts: mode %o owner %d:%d nlink %d", s.Mode, s.Uid, s.Gid, s.Nlink)
	}
	if v, err := getXattr(filepath.Join(d, "etc/hosts"), "user.note"); err != nil || string(v) != "hi" {
		t.Errorf("user.note xattr = %q, %v", v, err)
	}
	if _, err := getXattr(filepath.Join(d, "etc/hosts"), "trusted.overlay.redirect"); err == nil {
		t.Error("trusted.overlay.* xattr from the tar was applied")
	}
	if l, err := os.Readlink(filepath.Join(d, "etc/link")); err != nil || l != "hosts" {
		t.Errorf("etc/link -> %q, %v", l, err)
	}
	if s := lstat("etc/gone"); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
		t.Errorf("whiteout: mode %o rdev %d", s.Mode, s.Rdev)
	}
	if v, err := getXattr(filepath.Join(d, "var"), xattrOpaque); err != nil || string(v) != "y" {
		t.Errorf("opaque xattr = %q, %v", v, err)
	}
	if _, err := os.Lstat(filepath.Join(d, "var/.wh..wh.plnk")); !os.IsNotExist(err) {
		t.Errorf("aufs marker was written: %v", err)
	}
	if s := lstat("fifo"); s.Mode != unix.S_IFIFO|0o600 {
		t.Errorf("fifo mode %o", s.Mode)
	}
	if s := lstat("bin/su"); s.Mode != unix.S_IFREG|0o4755 {
		t.Errorf("setuid lost: %o", s.Mode)
	}
	if s := lstat("dev/null"); s.Mode != unix.S_IFCHR|0o666 || unix.Major(s.Rdev) != 1 || unix.Minor(s.Rdev) != 3 {
		t.Errorf("dev/null mode %o rdev %d", s.Mode, s.Rdev)
	}
	if b, _ := os.ReadFile(filepath.Join(d, "replaced")); string(b) != "second" {
		t.Errorf("later entry must win, got %q", b)
	}
}

// TestUnpackReplacedDirs replaces directories the unpacker has already resolved (and cached) with
// files and new directories, and checks the later entries land in the new ones.
func TestUnpackReplacedDirs(t *testing.T) {
	needRoot(t)
	d := t.TempDir()
	unpackEnts(t, d,
		file("a/b/old", "1"),
		file("a/b", "now a file"),
		file("a/c/d/old", "2"),
		dir("a/c/"), // an existing directory stays, with its children
		file("a/c/d", "file over dir"),
		file("a/c/d2/new", "3"),
		file("e/f/old", "4"),
		ent{name: "e/.wh.f", typ: tar.TypeReg},
		file("e/g/new", "5"),
		file("x/y/old", "6"),
		file("x/y", "file over dir"),
		dir("x/y/"), // and a directory again
		file("x/y/new", "7"),
	)
	want := map[string]string{"x/y/new": "7", "a/b": "now a file", "a/c/d": "file over dir", "a/c/d2/new": "3", "e/g/new": "5"}
	for rel, body := range want {
		if b, err := os.ReadFile(filepath.Join(d, rel)); err != nil || string(b) != body {
			t.Errorf("%s = %q, %v; want %q", rel, b, err, body)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(d, "e/f"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Errorf("e/f is not a whiteout: mode %o, %v", st.Mode, err)
	}
	for _, gone := range []string{"a/b/old", "a/c/d/old", "e/f/old", "x/y/old"} {
		if _, err := os.Lstat(filepath.Join(d, gone)); err == nil {
			t.Errorf("%s survived its directory's replacement", gone)
		}
	}
}

func TestUnpackHostile(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name string
		ents func(outside string) []ent
		ok   bool // the tar is legal; it just must not write outside
	}{
		{name: "dotdot", ents: func(string) []ent { return []ent{file("../x", "x")} }},
		{name: "nested dotdot", ents: func(string) []ent { return []ent{file("a/../../x", "x")} }},
		{name: "dotdot dir", ents: func(string) []ent { return []ent{dir("../x/")} }},
		{name: "symlink to outside then child", ents: func(o string) []ent {
			return []ent{symlink("a", o), file("a/passwd", "pwned")}
		}},
		{name: "relative symlink out then child", ents: func(o string) []ent {
			return []ent{symlink("a", "../outside"), file("a/passwd", "pwned")}
		}},
		{name: "symlink to dotdot then child", ents: func(string) []ent {
			return []ent{symlink("a", ".."), file("a/x", "pwned")}
		}},
		{name: "symlink then dir below", ents: func(o string) []ent {
			return []ent{symlink("a", o), dir("a/sub/")}
		}},
		{name: "symlink then whiteout below", ents: func(o string) []ent {
			return []ent{symlink("a", o), {name: "a/.wh.passwd", typ: tar.TypeReg}}
		}},
		{name: "symlink then opaque below", ents: func(o string) []ent {
			return []ent{symlink("a", o), {name: "a/.wh..wh..opq", typ: tar.TypeReg}}
		}},
		{name: "symlink then hardlink below", ents: func(o string) []ent {
			return []ent{file("f", "x"), symlink("a", o), hardlink("a/h", "f")}
		}},
		{name: "hardlink out", ents: func(string) []ent { return []ent{hardlink("h", "../../etc/passwd")} }},
		{name: "hardlink via symlink", ents: func(o string) []ent {
			return []ent{symlink("a", o), hardlink("h", "a/passwd")}
		}},
		{name: "hardlink to absolute host file", ents: func(o string) []ent {
			return []ent{hardlink("h", filepath.Join(o, "passwd"))}
		}},
		{name: "absolute name lands inside", ok: true, ents: func(o string) []ent {
			return []ent{file(filepath.Join(o, "passwd"), "inside"), file("/abs", "inside")}
		}},
		{name: "file replaces symlink", ok: true, ents: func(o string) []ent {
			return []ent{symlink("a", filepath.Join(o, "passwd")), file("a", "inside")}
		}},
		{name: "dir replaces symlink", ok: true, ents: func(o string) []ent {
			return []ent{symlink("a", o), dir("a/"), file("a/passwd", "inside")}
		}},
		// The unpacker caches resolved directories: one replaced later must not be written through.
		{name: "symlink replaces resolved dir then child", ents: func(o string) []ent {
			return []ent{dir("a/"), dir("a/b/"), file("a/b/x", "x"), symlink("a", o), file("a/passwd", "pwned")}
		}},
		{name: "symlink replaces resolved subdir then child", ents: func(o string) []ent {
			return []ent{file("a/b/c/x", "x"), symlink("a/b", o), file("a/b/passwd", "pwned")}
		}},
		{name: "whiteout of resolved dir then symlink then child", ents: func(o string) []ent {
			return []ent{file("a/b/x", "x"), {name: ".wh.a", typ: tar.TypeReg}, symlink("a", o), file("a/b/passwd", "pwned")}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sandbox := t.TempDir()
			outside := filepath.Join(sandbox, "outside")
			layer := filepath.Join(sandbox, "layer")
			mkdirs(t, outside, layer)
			if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("root"), 0o644); err != nil {
				t.Fatal(err)
			}
			err := Unpack(bytes.NewReader(makeTar(t, tc.ents(outside)...)), layer)
			if tc.ok && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("hostile tar unpacked without error")
				}
				if !strings.Contains(err.Error(), "unpack \"") {
					t.Errorf("error does not name the entry: %v", err)
				}
				t.Logf("error: %v", err)
			}
			// Nothing may change next to the layer or in the sentinel dir.
			sb, _ := os.ReadDir(sandbox)
			if len(sb) != 2 {
				t.Errorf("sandbox has %d entries, want outside and layer", len(sb))
			}
			got := treeState(t, outside)
			if len(got) != 1 {
				t.Errorf("sentinel dir changed: %v", got)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "passwd")); string(b) != "root" {
				t.Errorf("sentinel file changed: %q", b)
			}
			if _, err := getXattr(outside, xattrOpaque); err == nil {
				t.Error("opaque xattr set outside")
			}
			if _, err := os.Lstat("/abs"); err == nil {
				t.Error("/abs written on the host")
			}
		})
	}
}
