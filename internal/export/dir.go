package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
)

// WriteOCIDir writes img into the OCI image layout at dir, creating it or adding to an existing
// one. Blobs are hardlinked from the store when it is on the same filesystem, else copied. An
// index.json entry with the same tag (org.opencontainers.image.ref.name) is replaced, since tools
// look images up by that annotation; other entries are kept. Every file appears atomically.
func WriteOCIDir(dir string, img *image.Image, bs BlobOpener, tags []string) error {
	names, err := parseTags(tags)
	if err != nil {
		return fmt.Errorf("export oci dir %s: %w", dir, err)
	}
	if err := writeOCIDir(dir, img, bs, names); err != nil {
		return fmt.Errorf("export oci dir %s: %w", dir, err)
	}
	return nil
}

func writeOCIDir(dir string, img *image.Image, bs BlobOpener, names []imageName) error {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	// A write of this layout killed earlier may have left partial blobs or index files.
	for _, d := range []string{dir, filepath.Join(dir, "blobs", "sha256")} {
		if _, err := SweepPartials(d, ""); err != nil {
			return err
		}
	}
	// Blobs first and index.json last: a reader of the layout never sees an entry whose blobs are
	// not there yet.
	for _, b := range img.Blobs() {
		if err := placeBlob(dir, b, bs); err != nil {
			return err
		}
	}
	if err := placeBytes(filepath.Join(dir, blobPath(img.Manifest.Digest)), img.ManifestBytes); err != nil {
		return err
	}
	layoutFile := filepath.Join(dir, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layoutFile); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := atomicWrite(layoutFile, b); err != nil {
			return err
		}
	}
	entries, err := indexEntries(img, names)
	if err != nil {
		return err
	}
	indexFile := filepath.Join(dir, ocispec.ImageIndexFile)
	var old ocispec.Index
	oldBytes, err := os.ReadFile(indexFile)
	switch b := oldBytes; {
	case err == nil:
		if err := json.Unmarshal(b, &old); err != nil {
			return fmt.Errorf("existing %s: %w", indexFile, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	merged := make([]ocispec.Descriptor, 0, len(old.Manifests)+len(entries))
	for _, e := range old.Manifests {
		if !replacedBy(e, entries) {
			merged = append(merged, e)
		}
	}
	b, err := json.Marshal(newIndex(append(merged, entries...)))
	if err != nil {
		return err
	}
	if bytes.Equal(b, oldBytes) {
		return nil // the layout already holds exactly this image under these tags
	}
	return atomicWrite(indexFile, b)
}

// replacedBy reports whether an existing index entry names what one of the new entries names: the
// same tag, or (for untagged exports) the same manifest without a tag.
func replacedBy(old ocispec.Descriptor, entries []ocispec.Descriptor) bool {
	oldRef := old.Annotations[ocispec.AnnotationRefName]
	for _, e := range entries {
		newRef := e.Annotations[ocispec.AnnotationRefName]
		if newRef != "" && newRef == oldRef {
			return true
		}
		if newRef == "" && oldRef == "" && e.Digest == old.Digest {
			return true
		}
	}
	return false
}

func placeBlob(dir string, desc ocispec.Descriptor, bs BlobOpener) error {
	dst := filepath.Join(dir, blobPath(desc.Digest))
	if fi, err := os.Stat(dst); err == nil && fi.Size() == desc.Size {
		return nil // content-addressed: same name and size is the same blob
	}
	if src := bs.Path(desc.Digest); src != "" {
		// Link under a partial name and rename, so a half-written copy from an earlier crash is
		// replaced rather than kept, and a link a kill strands is swept like any partial.
		tmp := filepath.Join(filepath.Dir(dst), partialName(filepath.Base(dst)))
		if err := os.Link(src, tmp); err == nil {
			if err := os.Rename(tmp, dst); err == nil {
				return nil
			}
			os.Remove(tmp)
		}
		// Cross-device, a filesystem without hardlinks, or a concurrent writer of this layout
		// swept our link: fall back to copying.
	}
	rc, err := bs.Open(desc.Digest)
	if err != nil {
		return fmt.Errorf("open blob %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	return writeSwept(dst, 0o644, func(w io.Writer) error { return copyVerified(w, rc, desc) })
}

func placeBytes(dst string, b []byte) error {
	if fi, err := os.Stat(dst); err == nil && fi.Size() == int64(len(b)) {
		return nil
	}
	return atomicWrite(dst, b)
}

func atomicWrite(dst string, b []byte) error {
	return writeSwept(dst, 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}
