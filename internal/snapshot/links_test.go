package snapshot

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A COPY that links unchanged files from an earlier snapshot (copier.Links) leaves inodes shared
// between two upper dirs. Diff must write them as the regular files they are in each layer: a
// tar hard link only joins two paths of the same upper dir, whatever the link count says.
func TestDiffInodeSharedWithAnotherSnapshot(t *testing.T) {
	base := t.TempDir()
	prev, upper, copied := filepath.Join(base, "prev"), filepath.Join(base, "upper"), filepath.Join(base, "copied")
	mtime := time.Unix(1700000000, 0)
	for _, d := range []string{prev, upper, copied} {
		if err := os.MkdirAll(filepath.Join(d, "app"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, body string) {
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mtime, mtime)
	}
	for _, d := range []string{prev, copied} {
		write(filepath.Join(d, "app/a"), "same")
		write(filepath.Join(d, "app/b"), "same too")
	}
	// upper takes both from prev; in copied and upper, c and d are one inode (a real hard link).
	for _, n := range []string{"a", "b"} {
		if err := os.Link(filepath.Join(prev, "app", n), filepath.Join(upper, "app", n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{upper, copied} {
		write(filepath.Join(d, "app/c"), "pair")
		if err := os.Link(filepath.Join(d, "app/c"), filepath.Join(d, "app/d")); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(filepath.Join(d, "app"), mtime, mtime)
	}
	diff := func(dir string) []byte {
		var buf bytes.Buffer
		if _, err := Diff(dir, &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	got := diff(upper)
	if want := diff(copied); !bytes.Equal(got, want) {
		t.Error("the tar of an upper sharing inodes with another snapshot differs from a copy's")
	}
	links := map[string]string{}
	for _, e := range readTar(t, got) {
		if e.hdr.Typeflag == tar.TypeLink {
			links[e.hdr.Name] = e.hdr.Linkname
		}
	}
	if len(links) != 1 || links["app/d"] != "app/c" {
		t.Errorf("hard links in the tar: %v, want only app/d → app/c", links)
	}
}
