package contenthash

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// oldTree writes files with an mtime an hour ago, so their stat cache entries are not racy.
func oldTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	writeTree(t, root, files)
	old := time.Now().Add(-time.Hour)
	for p := range files {
		if err := os.Chtimes(filepath.Join(root, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

// warmCache hashes root into a saved cache file and returns the selection's digest.
func warmCache(t *testing.T, root, file string) digest.Digest {
	t.Helper()
	c, _ := LoadStatCache(file)
	ref := sel(t, &Source{Root: root, StatCache: c}, ".")
	if err := c.Save(file, ""); err != nil {
		t.Fatal(err)
	}
	return ref.Digest
}

// hashedWith runs a select of root with the cache in file and returns what it hashed.
func hashedWith(t *testing.T, root, file string, hash *counter) (digest.Digest, []string) {
	t.Helper()
	c, err := LoadStatCache(file)
	if err != nil {
		t.Fatal(err)
	}
	hash.paths = nil
	s := sel(t, &Source{Root: root, StatCache: c}, ".")
	return s.Digest, hash.paths
}

// Every part of the stat signature counts: a change of size, mtime, ctime, inode, mode or owner
// re-hashes the file, whatever the content.
func TestStatCacheSignature(t *testing.T) {
	d := t.TempDir()
	file := filepath.Join(t.TempDir(), "sc")
	oldTree(t, d, map[string]string{"a": "aaaa", "b": "bbbb"})
	_, _, hash := withHooks(t)
	warmCache(t, d, file)
	if _, h := hashedWith(t, d, file, hash); len(h) != 0 {
		t.Fatalf("warm select hashed %v", h)
	}
	a := filepath.Join(d, "a")
	old := time.Now().Add(-time.Hour)
	changes := []struct {
		name   string
		change func() error
	}{
		{"mtime", func() error { return os.Chtimes(a, old, old.Add(-time.Minute)) }},
		{"size", func() error { return os.WriteFile(a, []byte("aaaaa"), 0o644) }},
		// chmod there and back: mode ends where it was, only ctime moved.
		{"ctime", func() error {
			if err := os.Chmod(a, 0o600); err != nil {
				return err
			}
			return os.Chmod(a, 0o644)
		}},
		{"mode", func() error { return os.Chmod(a, 0o640) }},
		{"owner", func() error { return os.Lchown(a, 4321, 4321) }},
		// Same content, size and mtime in a new inode.
		{"inode", func() error {
			tmp := filepath.Join(d, ".a.new")
			if err := os.WriteFile(tmp, []byte("aaaa"), 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, a)
		}},
	}
	for _, c := range changes {
		if err := os.WriteFile(a, []byte("aaaa"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(a, old, old)
		warmCache(t, d, file)
		if _, h := hashedWith(t, d, file, hash); len(h) != 0 {
			t.Fatalf("%s: warm select hashed %v", c.name, h)
		}
		if err := c.change(); err != nil {
			if c.name == "owner" && os.Geteuid() != 0 {
				continue
			}
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.name != "mtime" {
			os.Chtimes(a, old, old) // only the change under test differs
		}
		if _, h := hashedWith(t, d, file, hash); strings.Join(h, ",") != "a" {
			t.Errorf("%s changed: hashed %v, want a", c.name, h)
		}
	}
}

// A damaged cache file never serves a wrong digest, and the next save rebuilds it: every byte
// of a small cache flipped in turn, and the file cut at every length.
func TestStatCacheDamaged(t *testing.T) {
	d := t.TempDir()
	file := filepath.Join(t.TempDir(), "sc")
	tree := map[string]string{}
	for i := range 6 {
		tree[fmt.Sprintf("dir%d/f%d", i%2, i)] = strings.Repeat(strconv.Itoa(i), i+1)
	}
	oldTree(t, d, tree)
	_, _, hash := withHooks(t)
	ref := warmCache(t, d, file)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, damaged []byte) {
		t.Helper()
		if err := os.WriteFile(file, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadStatCache(file)
		if err != nil {
			t.Fatalf("%s: load: %v", what, err)
		}
		hash.paths = nil
		if got := sel(t, &Source{Root: d, StatCache: c}, ".").Digest; got != ref {
			t.Fatalf("%s: digest %s, want %s", what, got, ref)
		}
		if len(hash.paths) == 0 {
			// Nothing was re-hashed, so nothing damaged was read: the damage must have been
			// somewhere no lookup depends on — there is no such place in this file.
			t.Fatalf("%s: damage went unnoticed", what)
		}
		if err := c.Save(file, ""); err != nil {
			t.Fatal(err)
		}
		if got, h := hashedWith(t, d, file, hash); got != ref || len(h) != 0 {
			t.Fatalf("%s: after the rebuild: digest ok %v, hashed %v", what, got == ref, h)
		}
	}
	for i := range good {
		damaged := append([]byte(nil), good...)
		damaged[i] ^= 0x40
		check(fmt.Sprintf("byte %d flipped", i), damaged)
	}
	for n := range len(good) {
		// Every length around the header and the last record, a sample elsewhere (each check
		// saves, with an fsync).
		if n <= headerSize+recordSize || n >= len(good)-recordSize || n%17 == 0 {
			check(fmt.Sprintf("cut at %d", n), good[:n])
		}
	}
	check("one byte more", append(append([]byte(nil), good...), 0))
}

// Whatever the file holds, loading and looking up neither panics nor fails.
func FuzzStatCacheLoad(f *testing.F) {
	d := f.TempDir()
	file := filepath.Join(f.TempDir(), "sc")
	oldTree(f, d, map[string]string{"a": "a", "b/c": "c", "b/d": "d"})
	c, _ := LoadStatCache(file)
	if _, err := (&Source{Root: d, StatCache: c}).Select([]string{"."}, nil); err != nil {
		f.Fatal(err)
	}
	if err := c.Save(file, ""); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(file)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(statCacheMagic))
	ref, err := (&Source{Root: d}).Select([]string{"."}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "sc")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadStatCache(p)
		if err != nil {
			t.Fatal(err)
		}
		c.Len()
		s, err := (&Source{Root: d, StatCache: c}).Select([]string{"."}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.Digest != ref.Digest {
			t.Fatalf("digest %s from a fuzzed cache, want %s", s.Digest, ref.Digest)
		}
		if err := c.Save(p, ""); err != nil {
			t.Fatal(err)
		}
	})
}

// The walk's own lstat (fstatat on the directory fd) reads what os.Lstat does.
func TestStatFromUnix(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{"f": "x", "dir/g": "y", "link": "->f"})
	if err := syscall.Mkfifo(filepath.Join(d, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(d, "f"), 0o4755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(d, "f"), 0o755|fs.ModeSetuid|fs.ModeSetgid)
	os.Chmod(filepath.Join(d, "dir"), 0o755|fs.ModeSticky)
	for _, name := range []string{"f", "dir", "link", "fifo", "dir/g"} {
		fi, err := os.Lstat(filepath.Join(d, name))
		if err != nil {
			t.Fatal(err)
		}
		var sys unix.Stat_t
		if err := unix.Fstatat(unix.AT_FDCWD, filepath.Join(d, name), &sys, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		if got, want := statFromUnix(&sys), statFromInfo(fi); got != want {
			t.Errorf("%s: fstatat gives %+v, os.Lstat %+v", name, got, want)
		}
	}
}

// pathCompare orders as pathLess does (the stat cache's table order is the selection's).
func TestPathCompare(t *testing.T) {
	names := []string{"", "a", "a/b", "a.txt", "a-b", "a/b/c", "a/b.c", "ab", "b", "/", "a//b"}
	for _, x := range names {
		for _, y := range names {
			want := 0
			if pathLess(x, y) {
				want = -1
			} else if pathLess(y, x) {
				want = 1
			}
			if got := pathCompare(x, y); got != want {
				t.Errorf("pathCompare(%q, %q) = %d, want %d", x, y, got, want)
			}
		}
	}
}

// computeDigest's buffered encoding is byte for byte the original field-by-field one, so no key
// changed.
func TestComputeDigestEncoding(t *testing.T) {
	var files []File
	for i := range 3000 {
		f := File{Path: fmt.Sprintf("d%d/f%d", i%7, i), Mode: fs.FileMode(0o644), UID: i % 3, GID: i % 5}
		switch i % 5 {
		case 0:
			f.Mode = fs.ModeDir | 0o755
		case 1:
			f.Mode, f.Link = fs.ModeSymlink|0o777, "../t"
		case 2:
			f.HardLink = "d0/f0"
			fallthrough
		default:
			f.sum, f.hashed = sha256.Sum256([]byte(f.Path)), true
			f.Mode |= fs.ModeSetgid
		}
		files = append(files, f)
	}
	matches := []Match{{Pattern: "d*", Path: "d0", IsDir: true, Target: "d0"}, {Pattern: "x", Path: "x", Target: "y"}}
	for _, owners := range []bool{false, true} {
		if got, want := computeDigest(matches, files, owners), referenceDigest(matches, files, owners); got != want {
			t.Errorf("owners=%v: %s, want %s", owners, got, want)
		}
	}
}

// referenceDigest is computeDigest as it was first written, one field at a time.
func referenceDigest(matches []Match, files []File, owners bool) digest.Digest {
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	field(digestFormat)
	field(strconv.FormatBool(owners))
	for _, m := range matches {
		field("M")
		field(m.Pattern)
		field(m.Path)
		field(m.Target)
		field(strconv.FormatBool(m.IsDir))
	}
	for _, f := range files {
		field("F")
		field(f.Path)
		field(typeChar(f.Mode))
		field(strconv.FormatUint(uint64(unixPerm(f.Mode)), 8))
		field(f.Link)
		field(string(f.Digest()))
		if owners {
			field(strconv.Itoa(f.UID) + ":" + strconv.Itoa(f.GID))
		}
		if f.HardLink != "" {
			field("H")
			field(f.HardLink)
		}
	}
	return digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
}

// BenchmarkStatCacheLoad is loading a cache of n entries (load) and loading it and matching a
// whole sorted selection against it (load+match), as a no-change rebuild of n files does.
func BenchmarkStatCacheLoad(b *testing.B) {
	for _, n := range benchSizes {
		root := "/work/project"
		c := &StatCache{added: map[string]statEntry{}}
		files := make([]File, n)
		stats := make([]fileStat, n)
		hashedAt := time.Now()
		for i := range n {
			files[i].Path = fmt.Sprintf("src/d%d/f%d.txt", i%(n/100), i)
			stats[i] = fileStat{mode: 0o644, size: 1024, mtime: hashedAt.Add(-time.Hour).UnixNano(), ino: uint64(i)}
			c.store(root+"/"+files[i].Path, &stats[i], sha256.Sum256([]byte(files[i].Path)), hashedAt)
		}
		sortFiles(files, stats)
		file := filepath.Join(b.TempDir(), "sc")
		if err := c.Save(file, ""); err != nil {
			b.Fatal(err)
		}
		b.Run(strconv.Itoa(n)+"/load", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c, _ := LoadStatCache(file); c.count != n {
					b.Fatalf("%d entries", c.count)
				}
			}
		})
		b.Run(strconv.Itoa(n)+"/load+match", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, _ := LoadStatCache(file)
				cur := c.cursor(root)
				for i := range files {
					if _, ok := cur.lookup(files[i].Path, &stats[i]); !ok {
						b.Fatalf("%s: miss", files[i].Path)
					}
				}
			}
		})
	}
}
