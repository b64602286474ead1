package export

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/testenv"
)

// busybox builds the fixture image once per test; its layout directory doubles as the blob store.
func busybox(t *testing.T) (*image.Image, *testenv.DirStore) {
	t.Helper()
	testenv.RequireTools(t, testenv.HostBusybox, "skopeo")
	dir := t.TempDir()
	img, err := testenv.BuildBusyboxImage(dir)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := testenv.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	return img, bs
}

func inspectDigest(t *testing.T, transportRef string) string {
	t.Helper()
	out, err := testenv.SkopeoOutput("inspect", transportRef)
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Digest string }
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info.Digest
}

func extractTar(t *testing.T, file, dst string) {
	t.Helper()
	if out, err := exec.Command("tar", "-xf", file, "-C", dst).CombinedOutput(); err != nil {
		t.Fatalf("tar -xf %s: %v\n%s", file, err, out)
	}
}

func TestOCIArchive(t *testing.T) {
	img, bs := busybox(t)
	file := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteOCIArchive(f, img, bs, []string{"example.com/team/busybox:v1"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := inspectDigest(t, "oci-archive:"+file); got != img.Manifest.Digest.String() {
		t.Fatalf("skopeo sees %s, exported %s", got, img.Manifest.Digest)
	}

	layout := t.TempDir()
	extractTar(t, file, layout)
	var idx ocispec.Index
	b, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "v1" ||
		idx.Manifests[0].Annotations[AnnotationImageName] != "example.com/team/busybox:v1" {
		t.Fatalf("index.json: %s", b)
	}
	testenv.RequireTools(t, "umoci")
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command("umoci", "unpack", "--image", layout+":v1", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(bundle, "rootfs", "bin", "busybox"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("rootfs/bin/busybox: %v %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(bundle, "rootfs", "bin", "sh")); err != nil || target != "/bin/busybox" {
		t.Fatalf("rootfs/bin/sh -> %q, %v", target, err)
	}
}

func TestArchivesAreReproducible(t *testing.T) {
	img, bs := busybox(t)
	for name, write := range map[string]func(io.Writer, *image.Image, BlobOpener, []string) error{
		"oci": WriteOCIArchive, "docker": WriteDockerArchive,
	} {
		var a, b bytes.Buffer
		if err := write(&a, img, bs, []string{"busybox", "busybox:1"}); err != nil {
			t.Fatal(err)
		}
		if err := write(&b, img, bs, []string{"busybox", "busybox:1"}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("%s archive differs between two writes", name)
		}
		tr := tar.NewReader(&a)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if hdr.ModTime.Unix() != 0 || hdr.Uid != 0 || hdr.Gid != 0 ||
				(hdr.Typeflag == tar.TypeReg && hdr.Mode != 0o644) {
				t.Fatalf("%s: %s has mtime %v uid %d gid %d mode %o", name, hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Mode)
			}
		}
	}
}

func TestDockerArchive(t *testing.T) {
	img, bs := busybox(t)
	file := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	tags := []string{"busybox:latest", "localhost:5000/tools/busybox:1.36"}
	if err := WriteDockerArchive(f, img, bs, tags); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	extractTar(t, file, dir)
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m []dockerManifestEntry
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || strings.Join(m[0].RepoTags, ",") != "busybox:latest,localhost:5000/tools/busybox:1.36" ||
		len(m[0].Layers) != len(img.Layers) {
		t.Fatalf("manifest.json: %s", b)
	}
	for _, p := range append([]string{m[0].Config, "repositories", "index.json", "oci-layout"}, m[0].Layers...) {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Fatalf("%s named in manifest.json: %v", p, err)
		}
	}
	// Docker-style loaders see the image under its tag ...
	if err := testenv.Skopeo("inspect", "docker-archive:"+file+":busybox:latest"); err != nil {
		t.Fatal(err)
	}
	// ... and can read every layer, which is where a compressed layer would trip them up.
	if err := testenv.Skopeo("copy", "--quiet", "docker-archive:"+file, "oci:"+t.TempDir()+":x"); err != nil {
		t.Fatal(err)
	}
	// Modern `docker save` output is an OCI layout too.
	if got := inspectDigest(t, "oci:"+dir+":latest"); got != img.Manifest.Digest.String() {
		t.Fatalf("as OCI layout: %s, want %s", got, img.Manifest.Digest)
	}
}

func TestOCIDirMergesAndHardlinks(t *testing.T) {
	img, bs := busybox(t)
	dir := filepath.Join(t.TempDir(), "layout")
	if err := WriteOCIDir(dir, img, bs, []string{"example.com/a:one"}); err != nil {
		t.Fatal(err)
	}
	if err := WriteOCIDir(dir, img, bs, []string{"example.com/a:two"}); err != nil {
		t.Fatal(err)
	}
	// Re-exporting a tag replaces its entry rather than adding a second "one".
	if err := WriteOCIDir(dir, img, bs, []string{"example.com/a:one"}); err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	b, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 {
		t.Fatalf("index.json has %d entries, want 2: %s", len(idx.Manifests), b)
	}
	for _, tag := range []string{"one", "two"} {
		if got := inspectDigest(t, "oci:"+dir+":"+tag); got != img.Manifest.Digest.String() {
			t.Fatalf("oci:%s:%s is %s, want %s", dir, tag, got, img.Manifest.Digest)
		}
	}
	layer := img.Layers[0].Digest
	src, err := os.Stat(bs.Path(layer))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.Stat(filepath.Join(dir, "blobs", "sha256", layer.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	if src.Sys().(*syscall.Stat_t).Ino != dst.Sys().(*syscall.Stat_t).Ino {
		t.Fatal("layer was copied, not hardlinked, within one filesystem")
	}

	// Exporting what the layout already holds rewrites nothing, index.json included.
	indexIno := func() uint64 {
		fi, err := os.Stat(filepath.Join(dir, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	before := indexIno()
	if err := WriteOCIDir(dir, img, bs, []string{"example.com/a:one"}); err != nil {
		t.Fatal(err)
	}
	if indexIno() != before {
		t.Error("an up-to-date index.json was rewritten")
	}
	if b2, _ := os.ReadFile(filepath.Join(dir, "index.json")); !bytes.Equal(b, b2) {
		t.Errorf("index.json changed: %s, was %s", b2, b)
	}
}

// noPathStore hides file paths, forcing the copy fallback.
type noPathStore struct{ *testenv.DirStore }

func (noPathStore) Path(digest.Digest) string { return "" }

func TestOCIDirCopiesAndVerifies(t *testing.T) {
	img, bs := busybox(t)
	dir := t.TempDir()
	if err := WriteOCIDir(dir, img, noPathStore{bs}, nil); err != nil {
		t.Fatal(err)
	}
	if got := inspectDigest(t, "oci:"+dir); got != img.Manifest.Digest.String() {
		t.Fatalf("untagged layout: %s, want %s", got, img.Manifest.Digest)
	}
	// A corrupted store blob must fail the export, not be copied along.
	if err := os.WriteFile(bs.Path(img.Layers[0].Digest), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteOCIDir(t.TempDir(), img, noPathStore{bs}, nil); err == nil {
		t.Fatal("export of a corrupt blob succeeded")
	}
	if err := WriteOCIArchive(io.Discard, img, bs, nil); err == nil {
		t.Fatal("archive of a corrupt blob succeeded")
	}
}

func TestParseTag(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                   "docker.io/library/busybox:latest busybox:latest",
		"x:1":                       "docker.io/library/x:1 x:1",
		"me/app:v2":                 "docker.io/me/app:v2 me/app:v2",
		"localhost:5000/a/b":        "localhost:5000/a/b:latest localhost:5000/a/b:latest",
		"index.docker.io/library/x": "docker.io/library/x:latest x:latest",
	} {
		n, err := parseTag(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got := n.full() + " " + n.familiar(); got != want {
			t.Fatalf("%s: %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"Upper/case", "a@sha256:abc", "a:bad tag", ""} {
		if _, err := parseTag(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}
