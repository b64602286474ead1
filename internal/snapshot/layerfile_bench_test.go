package snapshot

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/klauspost/pgzip"
)

// BenchmarkUnpackLayerFile unpacks a real gzip layer (STRATA_BENCH_LAYER) into a directory below
// STRATA_BENCH_DIR (put it on the filesystem the store uses): the Debian + node base of the bench's
// node project is the case it was written for.
func BenchmarkUnpackLayerFile(b *testing.B) {
	needRoot(b)
	layer, parent := os.Getenv("STRATA_BENCH_LAYER"), os.Getenv("STRATA_BENCH_DIR")
	if layer == "" || parent == "" {
		b.Skip("set STRATA_BENCH_LAYER (a gzip layer) and STRATA_BENCH_DIR")
	}
	open := func() io.ReadCloser {
		f, err := os.Open(layer)
		if err != nil {
			b.Fatal(err)
		}
		zr, err := pgzip.NewReader(f)
		if err != nil {
			b.Fatal(err)
		}
		return struct {
			io.Reader
			io.Closer
		}{zr, f}
	}
	b.ResetTimer()
	for range b.N {
		dir := filepath.Join(parent, "bench-unpack")
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		r := open()
		if err := Unpack(r, dir); err != nil {
			b.Fatal(err)
		}
		r.Close()
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// TestUnpackLayerFileMatchesGNUTar unpacks STRATA_BENCH_LAYER (a gzip layer without whiteouts,
// such as a base image) with Unpack, serially and with writers, and with GNU tar, into
// directories below STRATA_BENCH_DIR, and compares the three trees entry by entry, nanosecond
// times and link counts included.
func TestUnpackLayerFileMatchesGNUTar(t *testing.T) {
	needRoot(t)
	layer, parent := os.Getenv("STRATA_BENCH_LAYER"), os.Getenv("STRATA_BENCH_DIR")
	if layer == "" || parent == "" {
		t.Skip("set STRATA_BENCH_LAYER (a gzip layer) and STRATA_BENCH_DIR")
	}
	unpackInto := func(name string, writers int) string {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if writers < 0 {
			cmd := exec.Command("tar", "--numeric-owner", "--same-owner", "--same-permissions", "--xattrs",
				"--xattrs-include=*", "-xzf", layer, "-C", dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tar: %v: %s", err, out)
			}
			return dir
		}
		old := unpackWriters
		unpackWriters = writers
		defer func() { unpackWriters = old }()
		f, err := os.Open(layer)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zr, err := pgzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := Unpack(zr, dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	state := func(root string) map[string]string {
		m := map[string]string{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			line := fmt.Sprintf("mode=%o own=%d:%d mtime=%d.%09d nlink=%d rdev=%d", st.Mode, st.Uid, st.Gid,
				st.Mtim.Sec, st.Mtim.Nsec, st.Nlink, st.Rdev)
			// A directory's size is the blocks of its index, which depend on creation order.
			if st.Mode&unix.S_IFMT == unix.S_IFLNK {
				l, _ := os.Readlink(p)
				line += " link=" + l
			}
			if st.Mode&unix.S_IFMT == unix.S_IFREG {
				line += fmt.Sprint(" size=", st.Size)
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				line += fmt.Sprintf(" sum=%x", sha256.Sum256(b))
			}
			x, _, err := readXattrs(p)
			if err != nil {
				return err
			}
			line += fmt.Sprint(" xattrs=", x)
			m[rel] = line
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	tarTree := state(unpackInto("gnutar", -1))
	for _, writers := range []int{0, unpackWriters} {
		got := state(unpackInto(fmt.Sprint("unpack", writers), writers))
		bad := 0
		for k, w := range tarTree {
			if k != "." && got[k] != w && bad < 10 {
				bad++
				t.Errorf("writers=%d %s:\n unpack %s\n tar    %s", writers, k, got[k], w)
			}
		}
		if len(got) != len(tarTree) {
			t.Errorf("writers=%d: %d entries, tar %d", writers, len(got), len(tarTree))
		}
		t.Logf("writers=%d: %d entries compared", writers, len(got))
	}
}
