package registry

import (
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
)

// storeImage presents an image whose blobs sit in a BlobStore as a go-containerregistry image, so
// remote.Write can do the existence checks, cross-repo mounts and uploads. The manifest bytes are
// handed over untouched, which keeps the pushed digest equal to img.Manifest.Digest.
type storeImage struct {
	img      *image.Image
	bs       BlobStore
	progress Progress
	byDigest map[v1.Hash]ocispec.Descriptor
}

func newStoreImage(img *image.Image, bs BlobStore, progress Progress) (v1.Image, error) {
	si := &storeImage{img: img, bs: bs, progress: progress, byDigest: map[v1.Hash]ocispec.Descriptor{}}
	for _, d := range img.Layers {
		h, err := v1.NewHash(d.Digest.String())
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", d.Digest, err)
		}
		if !bs.Has(d.Digest) {
			return nil, fmt.Errorf("layer %s is not in the store", d.Digest)
		}
		si.byDigest[h] = d
	}
	return partial.CompressedToImage(si)
}

func (s *storeImage) RawConfigFile() ([]byte, error) { return s.img.ConfigBytes, nil }
func (s *storeImage) RawManifest() ([]byte, error)   { return s.img.ManifestBytes, nil }
func (s *storeImage) MediaType() (types.MediaType, error) {
	return types.MediaType(s.img.Manifest.MediaType), nil
}

func (s *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	d, ok := s.byDigest[h]
	if !ok {
		return nil, fmt.Errorf("image %s has no layer %s", s.img.Manifest.Digest, h)
	}
	return &storeLayer{desc: d, hash: h, s: s}, nil
}

type storeLayer struct {
	desc ocispec.Descriptor
	hash v1.Hash
	s    *storeImage
}

func (l *storeLayer) Digest() (v1.Hash, error) { return l.hash, nil }
func (l *storeLayer) Size() (int64, error)     { return l.desc.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}

func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.s.bs.Open(l.desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("open layer %s: %w", l.desc.Digest, err)
	}
	if l.s.progress == nil {
		return rc, nil
	}
	return &progressReader{ReadCloser: rc, desc: l.desc, progress: l.s.progress}, nil
}

type progressReader struct {
	io.ReadCloser
	desc     ocispec.Descriptor
	n        int64
	progress Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	if n > 0 {
		p.n += int64(n)
		p.progress(p.desc, p.n, p.desc.Size)
	}
	return n, err
}
