// Package image holds one platform-specific image as strata keeps it: the manifest and config bytes
// exactly as they were digested, plus the parsed descriptors the registry, exporters and solver need.
// Keeping the raw bytes means a pulled image re-exports or re-pushes under the same digest.
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker v2 schema2 media types. They are kept next to the OCI ones because registries, docker load and
// docker save still speak them, and a pulled image must keep its original type to keep its digest.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// MaxConfigSize bounds how much of a config (or manifest) blob is read into memory; real ones are a
// few KiB, so anything bigger is a broken or hostile registry rather than an image.
const MaxConfigSize = 16 << 20

// Image is one single-platform image. Layers keep their manifest order, duplicates included, because
// the order (not the set) is what defines the filesystem.
type Image struct {
	Manifest      ocispec.Descriptor // digest, size and media type of ManifestBytes
	ManifestBytes []byte
	Config        ocispec.Descriptor
	ConfigBytes   []byte
	Layers        []ocispec.Descriptor
	// Children is set when the image is a multi-platform build: Manifest and ManifestBytes are
	// then an OCI image index naming each child (one per platform, in build order), and Config,
	// ConfigBytes and Layers are empty.
	Children []*Image
}

// Opener is the part of a blob store FromManifest needs.
type Opener interface {
	Open(d digest.Digest) (io.ReadCloser, error)
}

// IsIndex reports whether mediaType names a multi-platform index (OCI index or Docker manifest list).
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

// IsManifest reports whether mediaType names a single-platform image manifest strata can use.
func IsManifest(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageManifest || mediaType == MediaTypeDockerManifest
}

// ManifestMediaType returns the media type a manifest declares. OCI manifests may leave the field
// out, so a manifest without one (but with a config) counts as an OCI image manifest.
func ManifestMediaType(manifestBytes []byte) (string, error) {
	var probe struct {
		MediaType     string          `json:"mediaType"`
		SchemaVersion int             `json:"schemaVersion"`
		Config        json.RawMessage `json:"config"`
		Manifests     json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(manifestBytes, &probe); err != nil {
		return "", fmt.Errorf("parse manifest: %w", err)
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType, nil
	case probe.SchemaVersion == 1:
		return "", errors.New("docker schema1 manifests are not supported; re-push the image with a current client")
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex, nil
	case probe.Config != nil:
		return ocispec.MediaTypeImageManifest, nil
	}
	return "", errors.New("parse manifest: no mediaType, config or manifests field")
}

// Parse builds an Image from manifest and config bytes, checking that the config is the one the
// manifest names so an Image can never pair a manifest with a foreign config.
func Parse(manifestBytes, configBytes []byte) (*Image, error) {
	img, err := parseManifest(manifestBytes)
	if err != nil {
		return nil, err
	}
	if err := verifyBytes(img.Config, configBytes); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	img.ConfigBytes = configBytes
	return img, nil
}

// FromManifest parses manifestBytes and reads the config it names from blobs.
func FromManifest(manifestBytes []byte, blobs Opener) (*Image, error) {
	img, err := parseManifest(manifestBytes)
	if err != nil {
		return nil, err
	}
	rc, err := blobs.Open(img.Config.Digest)
	if err != nil {
		return nil, fmt.Errorf("open config %s: %w", img.Config.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", img.Config.Digest, err)
	}
	if err := verifyBytes(img.Config, b); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	img.ConfigBytes = b
	return img, nil
}

// Blobs returns the config and every distinct layer, each once, in manifest order: the set a pull,
// push or export has to move.
//
// For an index, the blobs of every child, each child's manifest included (the index itself is
// not: callers write ManifestBytes last, as they do for a single image).
func (img *Image) Blobs() []ocispec.Descriptor {
	if len(img.Children) > 0 {
		seen := map[digest.Digest]bool{}
		var out []ocispec.Descriptor
		for _, c := range img.Children {
			for _, b := range append(c.Blobs(), c.Manifest) {
				if !seen[b.Digest] {
					seen[b.Digest] = true
					out = append(out, b)
				}
			}
		}
		return out
	}
	seen := map[digest.Digest]bool{img.Config.Digest: true}
	out := []ocispec.Descriptor{img.Config}
	for _, l := range img.Layers {
		if !seen[l.Digest] {
			seen[l.Digest] = true
			out = append(out, l)
		}
	}
	return out
}

// Platform reads the platform fields of the config, which an index entry or an export
// descriptor should repeat.
func (img *Image) Platform() (*ocispec.Platform, error) {
	if len(img.Children) > 0 {
		return nil, nil // an index is every platform at once
	}
	var c ocispec.Image
	if err := json.Unmarshal(img.ConfigBytes, &c); err != nil {
		return nil, fmt.Errorf("parse config %s: %w", img.Config.Digest, err)
	}
	if c.OS == "" && c.Architecture == "" {
		return nil, nil
	}
	return &ocispec.Platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant, OSVersion: c.OSVersion}, nil
}

func parseManifest(manifestBytes []byte) (*Image, error) {
	if len(manifestBytes) > MaxConfigSize {
		return nil, fmt.Errorf("manifest is %d bytes, more than the %d allowed", len(manifestBytes), MaxConfigSize)
	}
	mt, err := ManifestMediaType(manifestBytes)
	if err != nil {
		return nil, err
	}
	if !IsManifest(mt) {
		return nil, fmt.Errorf("media type %s is not an image manifest", mt)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(manifestBytes, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("manifest config digest: %w", err)
	}
	for i, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("manifest layer %d digest: %w", i, err)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("manifest layer %d has negative size %d", i, l.Size)
		}
	}
	return &Image{
		Manifest: ocispec.Descriptor{
			MediaType: mt,
			Digest:    digest.FromBytes(manifestBytes),
			Size:      int64(len(manifestBytes)),
		},
		ManifestBytes: manifestBytes,
		Config:        m.Config,
		Layers:        m.Layers,
	}, nil
}

func verifyBytes(desc ocispec.Descriptor, b []byte) error {
	if int64(len(b)) != desc.Size {
		return fmt.Errorf("%s: got %d bytes, manifest says %d", desc.Digest, len(b), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return fmt.Errorf("%s: content has digest %s", desc.Digest, got)
	}
	return nil
}

// Rewrite returns img with configBytes as its config: a new manifest naming the new config, both
// stored with put. The layers stay as they are.
func Rewrite(img *Image, configBytes []byte, put func([]byte) (digest.Digest, error)) (*Image, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(img.ManifestBytes, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", img.Manifest.Digest, err)
	}
	cd, err := put(configBytes)
	if err != nil {
		return nil, err
	}
	m.Config.Digest, m.Config.Size = cd, int64(len(configBytes))
	mb, md, err := putJSON(m, put)
	if err != nil {
		return nil, err
	}
	out := *img
	out.Manifest = ocispec.Descriptor{MediaType: img.Manifest.MediaType, Digest: md, Size: int64(len(mb))}
	out.ManifestBytes = mb
	out.Config = m.Config
	out.ConfigBytes = configBytes
	return &out, nil
}

// Annotate returns img with manifest added to the manifest's annotations (a new manifest blob,
// stored through put) and descriptor set as the annotations of the descriptor that points at it,
// which an OCI layout's index.json carries (BuildKit's annotation-manifest-descriptor). Empty maps
// change nothing.
func Annotate(img *Image, manifest, descriptor map[string]string, put func([]byte) (digest.Digest, error)) (*Image, error) {
	out := *img
	if len(manifest) > 0 {
		// ocispec.Manifest keeps the fields in the spec's order, as Rewrite does.
		var m ocispec.Manifest
		if err := json.Unmarshal(img.ManifestBytes, &m); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", img.Manifest.Digest, err)
		}
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		maps.Copy(m.Annotations, manifest)
		mb, md, err := putJSON(m, put)
		if err != nil {
			return nil, err
		}
		out.ManifestBytes = mb
		out.Manifest = ocispec.Descriptor{MediaType: img.Manifest.MediaType, Digest: md, Size: int64(len(mb))}
	}
	if len(descriptor) > 0 {
		out.Manifest.Annotations = maps.Clone(descriptor)
	}
	return &out, nil
}

// NewIndex makes the OCI image index of a multi-platform build: one entry per child, carrying
// the platform its config names (as docker and BuildKit read it to pick an image), stored
// through put. The children's own blobs must already be stored.
func NewIndex(children []*Image, put func([]byte) (digest.Digest, error)) (*Image, error) {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, c := range children {
		p, err := c.Platform()
		if err != nil {
			return nil, err
		}
		if p == nil {
			return nil, fmt.Errorf("image %s names no platform; an index entry needs one", c.Manifest.Digest)
		}
		d := c.Manifest
		d.Platform = p
		idx.Manifests = append(idx.Manifests, d)
	}
	b, d, err := putJSON(idx, put)
	if err != nil {
		return nil, err
	}
	return &Image{
		Manifest:      ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: int64(len(b))},
		ManifestBytes: b,
		Children:      children,
	}, nil
}

// putJSON encodes v and stores it through put, returning the bytes and their digest.
func putJSON(v any, put func([]byte) (digest.Digest, error)) ([]byte, digest.Digest, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, "", err
	}
	d, err := put(b)
	if err != nil {
		return nil, "", err
	}
	return b, d, nil
}
