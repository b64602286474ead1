package export

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/store"
	"github.com/strata-build/strata/internal/testenv"
)

// strataStore puts the fixture's blobs into a real strata store, which vouches for what it wrote.
func strataStore(t *testing.T, img *image.Image, bs *testenv.DirStore, exclusive bool) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), exclusive)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, b := range img.Blobs() {
		rc, err := bs.Open(b.Digest)
		if err != nil {
			t.Fatal(err)
		}
		err = st.Ingest(b.Digest, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// referenceArchive is the archive as archive/tar's Writer frames it, every byte through Write:
// what WriteOCIArchive and WriteDockerArchive wrote before they copied blob data themselves.
func referenceArchive(t *testing.T, img *image.Image, bs BlobOpener, tags []string, docker bool) []byte {
	t.Helper()
	names, err := parseTags(tags)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, b []byte) {
		if err := tw.WriteHeader(fileHeader(name, int64(len(b)))); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range img.Blobs() {
		rc, err := bs.Open(b.Digest)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		put(blobPath(b.Digest), data)
	}
	put(blobPath(img.Manifest.Digest), img.ManifestBytes)
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	put(ocispec.ImageLayoutFile, layout)
	if docker {
		index, manifestJSON, repositoriesJSON, err := dockerArchiveFiles(img, names)
		if err != nil {
			t.Fatal(err)
		}
		put(ocispec.ImageIndexFile, index)
		put("manifest.json", manifestJSON)
		if repositoriesJSON != nil {
			put("repositories", repositoriesJSON)
		}
	} else {
		index, err := layoutIndex(img, names)
		if err != nil {
			t.Fatal(err)
		}
		put(ocispec.ImageIndexFile, index)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The archive is byte for byte what archive/tar writes, whichever way the blob bytes travel:
// hashed through a buffer, or vouched for and copied file to file (copy_file_range).
func TestArchiveBytesMatchTarWriter(t *testing.T) {
	img, bs := busybox(t)
	st := strataStore(t, img, bs, false)
	dir := t.TempDir()
	for _, docker := range []bool{false, true} {
		write := WriteOCIArchive
		if docker {
			write = WriteDockerArchive
		}
		for _, tags := range [][]string{nil, {"busybox:1"}, {"a.example/x:1", "b.example/y:2"}} {
			want := referenceArchive(t, img, bs, tags, docker)
			for name, opener := range map[string]BlobOpener{"hashed": bs, "vouched": st} {
				var buf bytes.Buffer
				if err := write(&buf, img, opener, tags); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf.Bytes(), want) {
					t.Fatalf("docker %v tags %v, %s into a buffer: archive differs from archive/tar's", docker, tags, name)
				}
				file := filepath.Join(dir, "out.tar")
				if err := WriteFile(file, 0o644, func(w io.Writer) error { return write(w, img, opener, tags) }); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("docker %v tags %v, %s into a file: archive differs from archive/tar's", docker, tags, name)
				}
			}
		}
	}
	testenv.RequireTools(t, "tar")
	file := filepath.Join(dir, "out.tar")
	if err := WriteFile(file, 0o644, func(w io.Writer) error { return WriteOCIArchive(w, img, st, []string{"busybox:1"}) }); err != nil {
		t.Fatal(err)
	}
	if got := inspectDigest(t, "oci-archive:"+file); got != img.Manifest.Digest.String() {
		t.Fatalf("skopeo sees %s, exported %s", got, img.Manifest.Digest)
	}
}

// A store blob damaged after the store wrote it fails the export when the damage shows in its
// inode (a write resets the mtime stamp; a truncate changes the size); damage that keeps both
// (the disk, or a writer that restores the mtime) is left to `strata store verify`.
func TestVouchedBlobDamage(t *testing.T) {
	img, bs := busybox(t)
	st := strataStore(t, img, bs, true)
	layer := img.Layers[0]
	p := st.BlobPath(layer.Digest)
	vouched := func() bool {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return st.Vouched(layer.Digest, f, layer.Size)
	}
	export := func() error { return WriteOCIArchive(io.Discard, img, st, nil) }
	if !vouched() {
		t.Fatal("a blob the store just wrote is not vouched for")
	}
	if err := export(); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	stamped, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(at int64, b byte) {
		t.Helper()
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{b}, at); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	mid := int64(len(orig) / 2)

	// Written in place (as through a layout it was hardlinked into): hashed, and refused.
	time.Sleep(10 * time.Millisecond)
	flip(mid, orig[mid]^0xff)
	if vouched() {
		t.Fatal("a blob written after the store stamped it is still vouched for")
	}
	if err := export(); !errors.Is(err, errCorrupt) {
		t.Fatalf("export of a blob written in place: %v, want %v", err, errCorrupt)
	}
	// Put right again: hashed once, found good, stamped, trusted again.
	flip(mid, orig[mid])
	if err := export(); err != nil {
		t.Fatal(err)
	}
	if !vouched() {
		t.Fatal("a blob export hashed and found good was not stamped again")
	}

	// Truncated with the stamp put back: the size gives it away.
	if err := os.Truncate(p, int64(len(orig)-1)); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, stamped.ModTime(), stamped.ModTime())
	if err := export(); err == nil {
		t.Fatal("export of a truncated blob succeeded")
	}
	if err := os.WriteFile(p, orig, 0o600); err != nil {
		t.Fatal(err)
	}

	// Same size, stamp put back: the export trusts it, store verify does not.
	flip(mid, orig[mid]^0xff)
	os.Chtimes(p, stamped.ModTime(), stamped.ModTime())
	if !vouched() {
		t.Fatal("test setup: the stamp was not put back")
	}
	res, err := st.Verify(false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, pr := range res.Problems {
		found = found || pr.Path == filepath.Join("blobs", "sha256", layer.Digest.Encoded())
	}
	if !found {
		t.Fatalf("store verify missed a damaged blob: %v", res.Problems)
	}
}
