package export

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestArchiveTailEndsEveryArchive(t *testing.T) {
	img, bs := busybox(t)
	for _, docker := range []bool{false, true} {
		for _, tags := range [][]string{nil, {"busybox:1"}, {"a.example/x:1", "b.example/y:2"}} {
			var buf bytes.Buffer
			write := WriteOCIArchive
			if docker {
				write = WriteDockerArchive
			}
			if err := write(&buf, img, bs, tags); err != nil {
				t.Fatal(err)
			}
			tail, err := ArchiveTail(img, tags, docker)
			if err != nil {
				t.Fatal(err)
			}
			if len(tail) < 1024 || !bytes.HasSuffix(buf.Bytes(), tail) {
				t.Errorf("docker=%v tags=%v: the archive does not end with the %d-byte tail", docker, tags, len(tail))
			}
		}
	}
}

func TestWriteFileIfChanged(t *testing.T) {
	img, bs := busybox(t)
	dest := filepath.Join(t.TempDir(), "image.tar")
	export := func(tags []string) bool {
		t.Helper()
		tail, err := ArchiveTail(img, tags, false)
		if err != nil {
			t.Fatal(err)
		}
		written, err := WriteFileIfChanged(dest, 0o644, tail, func(w io.Writer) error { return WriteOCIArchive(w, img, bs, tags) }, nil)
		if err != nil {
			t.Fatal(err)
		}
		return written
	}
	var want bytes.Buffer
	if err := WriteOCIArchive(&want, img, bs, []string{"busybox:1"}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, wantWritten, written bool) {
		t.Helper()
		if written != wantWritten {
			t.Errorf("%s: written = %v, want %v", what, written, wantWritten)
		}
		got, err := os.ReadFile(dest)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: archive differs from a fresh export (%d bytes, want %d)", what, len(got), want.Len())
		}
		if fi, err := os.Lstat(dest); err != nil || fi.Mode() != 0o644 {
			t.Errorf("%s: dest mode %v, %v", what, fi.Mode(), err)
		}
	}
	ino := func() uint64 {
		fi, err := os.Stat(dest)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}

	check("first export", true, export([]string{"busybox:1"}))
	before := ino()
	check("same image and tags", false, export([]string{"busybox:1"}))
	if ino() != before {
		t.Error("an up-to-date archive was replaced")
	}
	if inspectDigest(t, "oci-archive:"+dest) != img.Manifest.Digest.String() {
		t.Error("skopeo reads another image from the kept archive")
	}

	// Anything a user did to the file makes the next export rewrite it.
	edit := func(what string, change func()) {
		t.Helper()
		change()
		check(what, true, export([]string{"busybox:1"}))
	}
	edit("a byte changed mid-file (same size, same tail)", func() {
		f, err := os.OpenFile(dest, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{'X'}, int64(want.Len()/2)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	})
	edit("bytes appended", func() {
		f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(make([]byte, 1024))
		f.Close()
	})
	edit("truncated", func() {
		if err := os.Truncate(dest, int64(want.Len()-1)); err != nil {
			t.Fatal(err)
		}
	})
	edit("chmod", func() {
		if err := os.Chmod(dest, 0o600); err != nil {
			t.Fatal(err)
		}
	})
	edit("replaced by a symlink to an identical copy", func() {
		other := dest + ".copy"
		if err := os.WriteFile(other, want.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(dest)
		if err := os.Symlink(other, dest); err != nil {
			t.Fatal(err)
		}
	})

	// Another tag is another archive.
	if !export([]string{"busybox:2"}) {
		t.Error("an export under another tag kept the old archive")
	}
	var other bytes.Buffer
	if err := WriteOCIArchive(&other, img, bs, []string{"busybox:2"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, other.Bytes()) {
		t.Error("the archive under the new tag differs from a fresh export")
	}
}

type mapMemo map[string]string

func (m mapMemo) OutputMemo(dest string) string         { return m[dest] }
func (m mapMemo) SetOutputMemo(dest, memo string) error { m[dest] = memo; return nil }

// age moves the recorded time of every memo by d, as if the compare had happened that much later.
func (m mapMemo) age(t *testing.T, d time.Duration) {
	for k, v := range m {
		i := strings.LastIndexByte(v, ' ')
		ns, err := strconv.ParseInt(v[i+1:], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		m[k] = v[:i+1] + strconv.FormatInt(ns+int64(d), 10)
	}
}

func TestWriteFileIfChangedMemo(t *testing.T) {
	img, bs := busybox(t)
	dest := filepath.Join(t.TempDir(), "image.tar")
	memo := mapMemo{}
	tail, err := ArchiveTail(img, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := WriteOCIArchive(&want, img, bs, nil); err != nil {
		t.Fatal(err)
	}
	// export reports whether the archive was written and whether it was even produced (read
	// back for a compare, or written).
	export := func() (written, produced bool) {
		t.Helper()
		written, err := WriteFileIfChanged(dest, 0o644, tail, func(w io.Writer) error {
			produced = true
			return WriteOCIArchive(w, img, bs, nil)
		}, memo)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(dest)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("archive differs from a fresh export: %v", err)
		}
		return written, produced
	}
	if w, _ := export(); !w || len(memo) != 0 {
		t.Fatalf("first export: written %v, memo %v", w, memo)
	}
	// A compare right after the write: equal, memo recorded, but the file is too young to trust it.
	if w, p := export(); w || !p || len(memo) != 1 {
		t.Fatalf("second export: written %v, produced %v, memo %v", w, p, memo)
	}
	if _, p := export(); !p {
		t.Fatal("a memo recorded within the margin of the file's ctime was trusted")
	}
	memo.age(t, 3*time.Second)
	if w, p := export(); w || p {
		t.Fatalf("an unchanged archive with an old enough memo: written %v, produced %v", w, p)
	}
	// A byte changed in place, same size and times kept: the ctime still moves, so it is compared
	// and rewritten.
	fi, _ := os.Stat(dest)
	f, err := os.OpenFile(dest, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{'X'}, int64(want.Len()/2))
	f.Close()
	os.Chtimes(dest, fi.ModTime(), fi.ModTime())
	if w, p := export(); !w || !p {
		t.Fatalf("an edited archive: written %v, produced %v", w, p)
	}
	// Another tail (another image or tags) never matches a memo.
	memo.age(t, 3*time.Second)
	other, err := ArchiveTail(img, []string{"busybox:2"}, false)
	if err != nil {
		t.Fatal(err)
	}
	produced := false
	if _, err := WriteFileIfChanged(dest, 0o644, other, func(w io.Writer) error {
		produced = true
		return WriteOCIArchive(w, img, bs, []string{"busybox:2"})
	}, memo); err != nil || !produced {
		t.Fatalf("an export with another tail trusted the memo: %v", err)
	}
}
