// Package export writes an image held in strata's store out of it: as an OCI image layout (a
// directory, or a tar of one as `buildx --output type=oci` makes) or as a `docker load` archive.
// Blobs are streamed and verified on the way, never held in memory, and tar output is byte-for-byte
// reproducible for the same image and tags.
package export

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
)

// BlobOpener is what export needs from strata's store.
type BlobOpener interface {
	Open(d digest.Digest) (io.ReadCloser, error)
	// Path returns the blob's file, so a layout on the same filesystem can hardlink it; "" if none.
	Path(d digest.Digest) string
}

// AnnotationImageName carries the full image name in index.json, as containerd, buildx and
// `docker save` write it; ocispec.AnnotationRefName carries only the tag.
const AnnotationImageName = "io.containerd.image.name"

// epoch is every tar entry's mtime: the image's identity is its digest, so archive bytes should
// not depend on when they were written.
var epoch = time.Unix(0, 0).UTC()

// WriteOCIArchive writes img as a tar of an OCI image layout: oci-layout, index.json (one entry per
// tag) and blobs/sha256/….
func WriteOCIArchive(w io.Writer, img *image.Image, bs BlobOpener, tags []string) error {
	names, err := parseTags(tags)
	if err != nil {
		return fmt.Errorf("export oci archive: %w", err)
	}
	index, err := layoutIndex(img, names)
	if err != nil {
		return fmt.Errorf("export oci archive: %w", err)
	}
	tw := tar.NewWriter(w)
	if err := writeLayoutTar(tw, img, bs, index); err != nil {
		return fmt.Errorf("export oci archive: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export oci archive: %w", err)
	}
	return nil
}

// dockerManifestEntry is one element of a docker archive's manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteDockerArchive writes img in the format `docker load` reads: manifest.json and repositories
// next to the blobs, which are laid out (with index.json and oci-layout) the way `docker save` has
// since Docker 25, so the same file is also a valid OCI layout. Layers stay compressed; docker load
// detects the compression.
func WriteDockerArchive(w io.Writer, img *image.Image, bs BlobOpener, tags []string) error {
	names, err := parseTags(tags)
	if err != nil {
		return fmt.Errorf("export docker archive: %w", err)
	}
	index, manifestJSON, repositoriesJSON, err := dockerArchiveFiles(img, names)
	if err != nil {
		return fmt.Errorf("export docker archive: %w", err)
	}
	tw := tar.NewWriter(w)
	if err := writeLayoutTar(tw, img, bs, index); err != nil {
		return fmt.Errorf("export docker archive: %w", err)
	}
	if err := writeFile(tw, "manifest.json", manifestJSON); err != nil {
		return fmt.Errorf("export docker archive: %w", err)
	}
	if repositoriesJSON != nil {
		if err := writeFile(tw, "repositories", repositoriesJSON); err != nil {
			return fmt.Errorf("export docker archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("export docker archive: %w", err)
	}
	return nil
}

// dockerArchiveFiles returns the small files of a docker archive: index.json, manifest.json and
// repositories (nil when no tag names a layer).
func dockerArchiveFiles(img *image.Image, names []imageName) (index, manifestJSON, repositoriesJSON []byte, err error) {
	entry := dockerManifestEntry{Config: blobPath(img.Config.Digest), RepoTags: []string{}}
	for _, l := range img.Layers {
		entry.Layers = append(entry.Layers, blobPath(l.Digest))
	}
	repositories := map[string]map[string]string{}
	for _, n := range names {
		entry.RepoTags = append(entry.RepoTags, n.familiar())
		if len(img.Layers) > 0 {
			if repositories[n.familiarRepo()] == nil {
				repositories[n.familiarRepo()] = map[string]string{}
			}
			repositories[n.familiarRepo()][n.tag] = img.Layers[len(img.Layers)-1].Digest.Encoded()
		}
	}
	if manifestJSON, err = json.Marshal([]dockerManifestEntry{entry}); err != nil {
		return nil, nil, nil, err
	}
	if len(repositories) > 0 {
		if repositoriesJSON, err = json.Marshal(repositories); err != nil {
			return nil, nil, nil, err
		}
	}
	if index, err = layoutIndex(img, names); err != nil {
		return nil, nil, nil, err
	}
	return index, manifestJSON, repositoriesJSON, nil
}

// layoutIndex is the index.json of a layout holding img under names.
func layoutIndex(img *image.Image, names []imageName) ([]byte, error) {
	entries, err := indexEntries(img, names)
	if err != nil {
		return nil, err
	}
	return json.Marshal(newIndex(entries))
}

func writeLayoutTar(tw *tar.Writer, img *image.Image, bs BlobOpener, index []byte) error {
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	for _, b := range img.Blobs() {
		if err := writeBlob(tw, b, bs); err != nil {
			return err
		}
	}
	if err := writeFile(tw, blobPath(img.Manifest.Digest), img.ManifestBytes); err != nil {
		return err
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	if err := writeFile(tw, ocispec.ImageLayoutFile, layout); err != nil {
		return err
	}
	return writeFile(tw, ocispec.ImageIndexFile, index)
}

// writeBlob streams one blob into the tar, checking size and digest so a corrupt store entry fails
// the export instead of producing an archive that fails later, elsewhere.
func writeBlob(tw *tar.Writer, desc ocispec.Descriptor, bs BlobOpener) error {
	rc, err := bs.Open(desc.Digest)
	if err != nil {
		return fmt.Errorf("open blob %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	hdr := fileHeader(blobPath(desc.Digest), desc.Size)
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if err := copyVerified(tw, rc, desc); err != nil {
		return err
	}
	return nil
}

func copyVerified(w io.Writer, r io.Reader, desc ocispec.Descriptor) error {
	v := desc.Digest.Verifier()
	// Hash on another goroutine: the pipe hands each chunk over as soon as the hasher has copied
	// it, so hashing one chunk overlaps writing the next and export costs the slower of the two.
	pr, pw := io.Pipe()
	hashed := make(chan struct{})
	go func() {
		io.Copy(v, pr)
		close(hashed)
	}()
	n, err := io.Copy(io.MultiWriter(w, pw), io.LimitReader(r, desc.Size+1))
	pw.Close()
	<-hashed
	if err != nil {
		return fmt.Errorf("copy blob %s: %w", desc.Digest, err)
	}
	if n != desc.Size {
		return fmt.Errorf("blob %s: store has %d bytes, manifest says %d", desc.Digest, n, desc.Size)
	}
	if !v.Verified() {
		return fmt.Errorf("blob %s: %w", desc.Digest, errCorrupt)
	}
	return nil
}

var errCorrupt = errors.New("content in the store does not match its digest")

func writeFile(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(fileHeader(name, int64(len(b)))); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

func fileHeader(name string, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}
}

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// indexEntries returns one index.json descriptor per tag (all naming the same manifest), or one
// unannotated descriptor when there are no tags, so the image is still reachable from the index.
func indexEntries(img *image.Image, names []imageName) ([]ocispec.Descriptor, error) {
	platform, err := img.Platform()
	if err != nil {
		return nil, err
	}
	base := ocispec.Descriptor{
		MediaType: img.Manifest.MediaType,
		Digest:    img.Manifest.Digest,
		Size:      img.Manifest.Size,
		Platform:  platform,
	}
	if len(img.Manifest.Annotations) > 0 {
		base.Annotations = maps.Clone(img.Manifest.Annotations)
	}
	if len(names) == 0 {
		return []ocispec.Descriptor{base}, nil
	}
	var out []ocispec.Descriptor
	for _, n := range names {
		d := base
		// The manifest descriptor's own annotations (--annotation manifest-descriptor:…) first;
		// the names are the layout's and win.
		d.Annotations = maps.Clone(img.Manifest.Annotations)
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[AnnotationImageName] = n.full()
		d.Annotations[ocispec.AnnotationRefName] = n.tag
		out = append(out, d)
	}
	return out, nil
}

func newIndex(entries []ocispec.Descriptor) ocispec.Index {
	return ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: entries,
	}
}

// imageName is a normalized tag reference: docker.io/library/busybox:latest for "busybox".
type imageName struct {
	domain, path, tag string
}

func (n imageName) full() string { return n.domain + "/" + n.path + ":" + n.tag }

// familiarRepo is the repository as docker shows it: docker.io and library/ dropped.
func (n imageName) familiarRepo() string {
	if n.domain != "docker.io" {
		return n.domain + "/" + n.path
	}
	return strings.TrimPrefix(n.path, "library/")
}

func (n imageName) familiar() string { return n.familiarRepo() + ":" + n.tag }

var (
	pathRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// parseTag normalizes a tag the way the docker CLI does. It is written out here rather than taken
// from go-containerregistry because that rejects one-character repositories docker accepts.
func parseTag(s string) (imageName, error) {
	if strings.Contains(s, "@") {
		return imageName{}, fmt.Errorf("tag %q: a digest reference cannot name an exported image", s)
	}
	var n imageName
	rest := s
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		first := rest[:i]
		if first == "localhost" || strings.ContainsAny(first, ".:") {
			n.domain, rest = first, rest[i+1:]
		}
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		rest, n.tag = rest[:i], rest[i+1:]
		if !tagRE.MatchString(n.tag) {
			return imageName{}, fmt.Errorf("tag %q: invalid tag %q", s, n.tag)
		}
	} else {
		n.tag = "latest"
	}
	if n.domain == "" || n.domain == "index.docker.io" {
		n.domain = "docker.io"
	}
	if n.domain == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if !pathRE.MatchString(rest) {
		return imageName{}, fmt.Errorf("tag %q: invalid repository name %q (lowercase letters, digits, separators)", s, rest)
	}
	n.path = rest
	return n, nil
}

func parseTags(tags []string) ([]imageName, error) {
	var out []imageName
	seen := map[string]bool{}
	for _, t := range tags {
		n, err := parseTag(t)
		if err != nil {
			return nil, err
		}
		if !seen[n.full()] {
			seen[n.full()] = true
			out = append(out, n)
		}
	}
	return out, nil
}
