package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
)

// Stats counts the blob bytes a Client moved: what it downloaded into the store and what it
// uploaded from the store or streamed between repositories. Mounts and blobs the registry already
// had move nothing and count nothing.
type Stats struct {
	Pulled int64 `json:"pulled"`
	Pushed int64 `json:"pushed"`
}

type counters struct {
	pulled, pushed atomic.Int64
}

// Stats returns the bytes moved so far.
func (c *Client) Stats() Stats {
	return Stats{Pulled: c.count.pulled.Load(), Pushed: c.count.pushed.Load()}
}

// PullLazy fetches an image's manifest and config (checking the platform) but none of its layers,
// and returns the image with the repository its layers can be fetched from later (FetchBlob).
func (c *Client) PullLazy(ctx context.Context, ref string, bs BlobStore) (*image.Image, string, error) {
	return c.pullLazy(ctx, ref, c.platform, bs, false)
}

// PullLazyFor is PullLazy for platform p instead of the client's (one build pulls a base once per
// platform it builds for), and like BuildKit's FROM it accepts a single-platform image of another
// platform: only an index must list p.
func (c *Client) PullLazyFor(ctx context.Context, ref string, p ocispec.Platform, bs BlobStore) (*image.Image, string, error) {
	return c.pullLazy(ctx, ref, p, bs, true)
}

func (c *Client) pullLazy(ctx context.Context, ref string, p ocispec.Platform, bs BlobStore, lax bool) (*image.Image, string, error) {
	if p.Architecture == "" {
		p = c.platform
	}
	src, err := c.resolve(ctx, ref, p)
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: %w", ref, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(src.manifest, &m); err != nil {
		return nil, "", fmt.Errorf("pull %s: parse manifest %s: %w", ref, src.desc.Digest, err)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return nil, "", fmt.Errorf("pull %s: manifest %s: %w", ref, src.desc.Digest, err)
	}
	for _, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, "", fmt.Errorf("pull %s: manifest %s: %w", ref, src.desc.Digest, err)
		}
	}
	if !bs.Has(m.Config.Digest) {
		if err := c.fetchBlobs(ctx, src.repo, []ocispec.Descriptor{m.Config}, bs, nil); err != nil {
			return nil, "", fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	// With lax, a manifest named directly (no index to choose from) is used whatever its
	// platform, as BuildKit uses it for FROM (its frontend then warns, InvalidBaseImagePlatform);
	// the caller compares the config's platform. An index without the platform is an error.
	if src.picked || !lax {
		if err := checkConfigPlatform(m.Config.Digest, bs, p); err != nil {
			return nil, "", fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	img, err := parseLazy(src.manifest, src.desc, m, bs)
	if err != nil {
		return nil, "", fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, src.repo.Name(), nil
}

// parseLazy builds an Image whose layers need not be in the store.
func parseLazy(body []byte, desc ocispec.Descriptor, m ocispec.Manifest, bs BlobStore) (*image.Image, error) {
	rc, err := bs.Open(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	cfg, err := io.ReadAll(io.LimitReader(rc, image.MaxConfigSize))
	if err != nil {
		return nil, err
	}
	return &image.Image{Manifest: desc, ManifestBytes: body, Config: m.Config, ConfigBytes: cfg, Layers: m.Layers}, nil
}

// FetchBlob downloads one blob from repo (host/path) into the store, verifying its digest and size.
func (c *Client) FetchBlob(ctx context.Context, repo string, d ocispec.Descriptor, bs BlobStore, progress Progress) error {
	r, err := c.parseRepo(repo)
	if err != nil {
		return err
	}
	if bs.Has(d.Digest) {
		return nil
	}
	if err := c.fetchBlob(ctx, r, d, bs, progress); err != nil {
		return fmt.Errorf("fetch from %s: %w", repo, err)
	}
	return nil
}

func (c *Client) parseRepo(repo string) (name.Repository, error) {
	r, err := c.parse(repo + ":latest")
	if err != nil {
		return name.Repository{}, fmt.Errorf("repository %s: %w", repo, err)
	}
	return r.Context(), nil
}

// Manifest fetches the manifest ref names as it is (no platform selection): for artifacts such as
// a cache manifest. It returns the repository, the descriptor and the verified bytes.
func (c *Client) Manifest(ctx context.Context, ref string) (string, ocispec.Descriptor, []byte, error) {
	r, err := c.parse(ref)
	if err != nil {
		return "", ocispec.Descriptor{}, nil, err
	}
	got, err := c.get(ctx, r, c.remoteOptions(ctx))
	if err != nil {
		return "", ocispec.Descriptor{}, nil, err
	}
	desc := ocispec.Descriptor{MediaType: string(got.MediaType), Digest: digest.Digest(got.Digest.String()), Size: int64(len(got.Manifest))}
	if digest.FromBytes(got.Manifest) != desc.Digest {
		return "", ocispec.Descriptor{}, nil, fmt.Errorf("manifest of %s does not match its digest %s", ref, desc.Digest)
	}
	return r.Context().Name(), desc, got.Manifest, nil
}

// Blob is a blob a pushed manifest references: in the store, or, when Remote is set and the store
// lacks it, only in that repository (mounted across repositories when the registry is the same,
// streamed through otherwise).
type Blob struct {
	ocispec.Descriptor
	Remote string
}

// PushManifest uploads the blobs each destination lacks (in parallel, each digest once), then puts
// the manifest under every ref: a reader never sees a manifest whose blobs are missing.
func (c *Client) PushManifest(ctx context.Context, refs []string, mediaType string, manifest []byte, blobs []Blob, bs BlobStore, progress Progress) error {
	if len(refs) == 0 {
		return errors.New("push: no destination reference")
	}
	p := &pusher{opts: c.remoteOptions(ctx)}
	for _, ref := range refs {
		r, err := c.parse(ref)
		if err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		if d, ok := r.(name.Digest); ok && d.DigestStr() != digest.FromBytes(manifest).String() {
			return fmt.Errorf("push %s: reference pins %s but the manifest is %s", ref, d.DigestStr(), digest.FromBytes(manifest))
		}
		if err := c.uploadBlobs(ctx, p, r.Context(), blobs, bs, progress); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		err = c.retry(ctx, func() error {
			return p.do(func(rp *remote.Pusher) error {
				return rp.Put(ctx, r, rawManifest{body: manifest, mediaType: mediaType})
			})
		})
		if err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
	}
	return nil
}

// pusher shares one go-containerregistry Pusher (which authenticates once per repository) between
// uploads, and replaces it after a failure: a Pusher remembers a failed ping or token exchange
// for good, so a retry through it would fail again without asking the registry.
type pusher struct {
	opts []remote.Option
	mu   sync.Mutex
	p    *remote.Pusher
}

// do runs f with the current Pusher and returns its error classified.
func (p *pusher) do(f func(*remote.Pusher) error) error {
	p.mu.Lock()
	rp := p.p
	if rp == nil {
		var err error
		if rp, err = remote.NewPusher(p.opts...); err != nil {
			p.mu.Unlock()
			return err
		}
		p.p = rp
	}
	p.mu.Unlock()
	err := f(rp)
	if err != nil {
		p.mu.Lock()
		if p.p == rp {
			p.p = nil
		}
		p.mu.Unlock()
	}
	return classify(err)
}

func (c *Client) uploadBlobs(ctx context.Context, p *pusher, repo name.Repository, blobs []Blob, bs BlobStore, progress Progress) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	seen := map[digest.Digest]bool{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrentBlobs)
	for _, b := range blobs {
		if seen[b.Digest] {
			continue
		}
		seen[b.Digest] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.ensureUploaded(ctx, p, repo, b, bs, progress, sem); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// pushLayer presents a blob to go-containerregistry's pusher: from the store, or as a layer of its
// remote repository, which the pusher mounts when the registry is the same.
func (c *Client) pushLayer(ctx context.Context, b Blob, bs BlobStore, progress Progress) (v1.Layer, error) {
	h, err := v1.NewHash(b.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	if b.Remote == "" {
		if !bs.Has(b.Digest) {
			return nil, fmt.Errorf("blob %s is not in the store", b.Digest)
		}
		return partial.CompressedToLayer(&blobLayer{desc: b.Descriptor, hash: h, open: func() (io.ReadCloser, error) { return bs.Open(b.Digest) }, c: c, progress: progress})
	}
	src, err := c.parseRepo(b.Remote)
	if err != nil {
		return nil, err
	}
	srcRef := src.Digest(b.Digest.String())
	if bs.Has(b.Digest) {
		// Mounted from where it lives when the registry is the same (a base layer pulled for a
		// RUN is not sent again), sent from the store otherwise.
		l, err := partial.CompressedToLayer(&blobLayer{desc: b.Descriptor, hash: h, open: func() (io.ReadCloser, error) { return bs.Open(b.Digest) }, c: c, progress: progress})
		if err != nil {
			return nil, err
		}
		return &remote.MountableLayer{Layer: l, Reference: srcRef}, nil
	}
	open := func() (io.ReadCloser, error) {
		rl, err := remote.Layer(srcRef, c.remoteOptions(ctx)...)
		if err != nil {
			return nil, classify(err)
		}
		rc, err := rl.Compressed()
		if err != nil {
			return nil, classify(err)
		}
		// Streamed through: the bytes are both pulled and pushed, and must match the digest.
		return &verifyReader{r: &sizedReader{r: rc, desc: b.Descriptor}, rc: rc, want: b.Digest, count: &c.count.pulled}, nil
	}
	l, err := partial.CompressedToLayer(&blobLayer{desc: b.Descriptor, hash: h, open: open, c: c, progress: progress})
	if err != nil {
		return nil, err
	}
	return &remote.MountableLayer{Layer: l, Reference: srcRef}, nil
}

// blobLayer is one blob as go-containerregistry's CompressedLayer, counting pushed bytes.
type blobLayer struct {
	desc     ocispec.Descriptor
	hash     v1.Hash
	open     func() (io.ReadCloser, error)
	c        *Client
	progress Progress
}

func (l *blobLayer) Digest() (v1.Hash, error) { return l.hash, nil }
func (l *blobLayer) Size() (int64, error)     { return l.desc.Size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) {
	mt := l.desc.MediaType
	if mt == "" {
		mt = "application/octet-stream"
	}
	return types.MediaType(mt), nil
}
func (l *blobLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.open()
	if err != nil {
		return nil, err
	}
	return &countReader{ReadCloser: rc, desc: l.desc, count: &l.c.count.pushed, progress: l.progress}, nil
}

type countReader struct {
	io.ReadCloser
	desc     ocispec.Descriptor
	n        int64
	count    *atomic.Int64
	progress Progress
}

func (r *countReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	if n > 0 {
		r.n += int64(n)
		r.count.Add(int64(n))
		if r.progress != nil {
			r.progress(r.desc, r.n, r.desc.Size)
		}
	}
	return n, err
}

// verifyReader fails at EOF when the bytes read do not hash to want.
type verifyReader struct {
	r     io.Reader
	rc    io.Closer
	want  digest.Digest
	v     digest.Verifier
	count *atomic.Int64
}

func (v *verifyReader) Read(b []byte) (int, error) {
	if v.v == nil {
		v.v = v.want.Verifier()
	}
	n, err := v.r.Read(b)
	v.v.Write(b[:n])
	v.count.Add(int64(n))
	if err == io.EOF && !v.v.Verified() {
		return n, fmt.Errorf("blob %s: content does not match its digest", v.want)
	}
	return n, err
}

func (v *verifyReader) Close() error { return v.rc.Close() }

// rawManifest hands manifest bytes to the pusher untouched, keeping their digest.
type rawManifest struct {
	body      []byte
	mediaType string
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.MediaType(m.mediaType), nil }
