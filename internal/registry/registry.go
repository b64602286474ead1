// Package registry pulls images from and pushes images to OCI/Docker registries with
// go-containerregistry, moving blobs through strata's content store. It resolves multi-platform
// indexes to one platform, applies docker.io mirrors, reads credentials the way docker does, and
// refuses plain HTTP except to loopback addresses and hosts the user marked insecure.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
)

// Errors a caller may want to tell apart (errors.Is); the messages are written for the user.
var (
	ErrUnreachable  = errors.New("registry unreachable")
	ErrUnauthorized = errors.New("unauthorized")
	ErrNotFound     = errors.New("image not found")
	ErrNoPlatform   = errors.New("no image for platform")
)

// BlobStore is what the registry needs from strata's content store.
type BlobStore interface {
	Has(d digest.Digest) bool
	Open(d digest.Digest) (io.ReadCloser, error)
	// Ingest stores r under d, verifying the digest; atomic (temp+rename); a no-op if already present.
	Ingest(d digest.Digest, r io.Reader) error
}

// Progress receives byte progress for one blob: done of total bytes moved so far. It is called from
// several goroutines at once (one per blob in flight) and must not block for long.
type Progress func(blob ocispec.Descriptor, done, total int64)

// Options configures a Client.
type Options struct {
	// Insecure lists registries (host or host:port) that may be reached over plain HTTP, besides
	// loopback addresses, which always may.
	Insecure []string
	// Mirrors are tried in order before docker.io for docker.io images ("host[:port][/prefix]",
	// an http:// or https:// scheme is accepted and ignored: the Insecure rules decide the scheme).
	Mirrors []string
	// Platform picks the manifest out of a multi-platform index; the zero value means
	// linux and the architecture strata was built for.
	Platform ocispec.Platform

	// HeaderTimeout bounds the wait for a registry to start answering a sent request (it also
	// caps the dial and TLS handshake timeouts, 30s and 10s by default). IdleTimeout bounds how
	// long a response body, or an upload, may go without moving a byte. Zero means the duration
	// in STRATA_REGISTRY_TIMEOUT (EnvTimeout) when set, else DefaultHeaderTimeout (30s) and
	// DefaultIdleTimeout (60s).
	HeaderTimeout time.Duration
	IdleTimeout   time.Duration
	// Tries is how many times an operation (resolving, fetching a manifest or a blob, uploading a
	// blob, putting a manifest) is attempted while it fails in a way that may pass: 408, 429 and
	// 5xx answers, reset or cut connections, stalls. Zero means DefaultTries (3).
	Tries int
	// RetryDelay is the wait before the second try, doubled for each further one, plus up to 10%
	// jitter. Zero means DefaultRetryDelay (0.5s).
	RetryDelay time.Duration
}

// Client talks to registries. It is safe for concurrent use.
type Client struct {
	opts     Options
	platform ocispec.Platform
	limits   limits
	keychain authn.Keychain
	// dial replaces the network dialer; tests use it to point any host name at a local server.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	transportOnce sync.Once
	transport     http.RoundTripper

	count counters
	ups   uploads
	bg    sync.WaitGroup // background uploads (Preupload)
}

// concurrentBlobs is how many blobs a pull moves at once; registries and CDNs serve a handful of
// parallel streams faster than one, and more mostly adds contention.
const concurrentBlobs = 4

// New returns a Client. Credentials come from the docker config (DOCKER_CONFIG or ~/.docker/config.json,
// including credential helpers).
func New(opts Options) *Client {
	p := opts.Platform
	if p.OS == "" {
		p.OS = "linux"
	}
	if p.Architecture == "" {
		p.Architecture = runtime.GOARCH
	}
	return &Client{opts: opts, platform: p, keychain: authn.DefaultKeychain, limits: resolveLimits(opts)}
}

// Resolve returns the digest of the manifest ref names for the client's platform, following a
// multi-platform index to the platform's own manifest.
func (c *Client) Resolve(ctx context.Context, ref string) (digest.Digest, error) {
	src, err := c.resolve(ctx, ref, c.platform)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	return src.desc.Digest, nil
}

// Pull fetches the manifest, config and every blob bs lacks (each distinct digest once), verifying
// digests, and returns the image. Nothing partial becomes visible in bs if a blob fails.
func (c *Client) Pull(ctx context.Context, ref string, bs BlobStore, progress Progress) (*image.Image, error) {
	src, err := c.resolve(ctx, ref, c.platform)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(src.manifest, &m); err != nil {
		return nil, fmt.Errorf("pull %s: parse manifest %s: %w", ref, src.desc.Digest, err)
	}
	// The config first: a manifest named directly (not picked from an index) must still be for
	// our platform, as containerd checks, and that is known before any layer is fetched.
	if err := m.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("pull %s: manifest %s: %w", ref, src.desc.Digest, err)
	}
	if !bs.Has(m.Config.Digest) {
		if err := c.fetchBlobs(ctx, src.repo, []ocispec.Descriptor{m.Config}, bs, progress); err != nil {
			return nil, fmt.Errorf("pull %s: %w", ref, err)
		}
	}
	if err := checkConfigPlatform(m.Config.Digest, bs, c.platform); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	var todo []ocispec.Descriptor
	seen := map[digest.Digest]bool{m.Config.Digest: true}
	for _, d := range m.Layers {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("pull %s: manifest %s: %w", ref, src.desc.Digest, err)
		}
		if seen[d.Digest] || bs.Has(d.Digest) {
			continue
		}
		seen[d.Digest] = true
		todo = append(todo, d)
	}
	if err := c.fetchBlobs(ctx, src.repo, todo, bs, progress); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := image.FromManifest(src.manifest, bs)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, nil
}

// Push uploads the image's blobs that each destination lacks, then puts the manifest under every
// ref. Refs may name different repositories or registries; blobs are checked per repository.
// remoteOf, when not nil, names the repository a layer lives in (a base layer, a cache-imported
// layer): it is mounted from there when the registry is the same, and otherwise sent from the
// store or, when the store does not hold it, streamed through, never fetched into the store.
func (c *Client) Push(ctx context.Context, img *image.Image, bs BlobStore, refs []string, remoteOf func(digest.Digest) string, progress Progress) error {
	blobs := []Blob{{Descriptor: img.Config}}
	for _, l := range img.Layers {
		b := Blob{Descriptor: l}
		if remoteOf != nil {
			b.Remote = remoteOf(l.Digest)
		}
		blobs = append(blobs, b)
	}
	return c.PushManifest(ctx, refs, img.Manifest.MediaType, img.ManifestBytes, blobs, bs, progress)
}

// source is a resolved manifest and the repository its blobs come from (a mirror, possibly).
type source struct {
	repo     name.Repository
	desc     ocispec.Descriptor
	manifest []byte
	// picked is set when desc was chosen from an index by platform (so it is the platform's).
	picked bool
}

func (c *Client) resolve(ctx context.Context, ref string, p ocispec.Platform) (*source, error) {
	r, err := c.parse(ref)
	if err != nil {
		return nil, err
	}
	candidates := c.mirrorsFor(r)
	var mirrorErrs []string
	for _, m := range candidates {
		src, err := c.resolveAt(ctx, m, p)
		if err == nil {
			return src, nil
		}
		// A platform the image lacks is a property of the image, not of the mirror.
		if errors.Is(err, ErrNoPlatform) {
			return nil, err
		}
		mirrorErrs = append(mirrorErrs, fmt.Sprintf("mirror %s: %v", m.Context().RegistryStr(), err))
	}
	src, err := c.resolveAt(ctx, r, p)
	if err != nil && len(mirrorErrs) > 0 {
		return nil, fmt.Errorf("%w (after %s)", err, strings.Join(mirrorErrs, "; "))
	}
	return src, err
}

func (c *Client) resolveAt(ctx context.Context, r name.Reference, p ocispec.Platform) (*source, error) {
	opts := c.remoteOptions(ctx)
	got, err := c.get(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	desc := ocispec.Descriptor{MediaType: string(got.MediaType), Digest: digest.Digest(got.Digest.String()), Size: got.Size}
	body := got.Manifest
	picked := false
	if image.IsIndex(desc.MediaType) {
		child, err := pickPlatform(body, p)
		if err != nil {
			return nil, err
		}
		got, err = c.get(ctx, r.Context().Digest(child.Digest.String()), opts)
		if err != nil {
			return nil, err
		}
		body = got.Manifest
		desc = ocispec.Descriptor{MediaType: string(got.MediaType), Digest: child.Digest, Size: int64(len(body))}
		picked = true
	}
	if got := digest.FromBytes(body); got != desc.Digest {
		return nil, fmt.Errorf("manifest has digest %s, registry said %s", got, desc.Digest)
	}
	mt, err := image.ManifestMediaType(body)
	if err != nil {
		return nil, err
	}
	if !image.IsManifest(mt) {
		return nil, fmt.Errorf("%s is a %s, not an image", desc.Digest, mt)
	}
	desc.MediaType = mt
	return &source{repo: r.Context(), desc: desc, manifest: body, picked: picked}, nil
}

// get is remote.Get, retried, with its error classified.
func (c *Client) get(ctx context.Context, r name.Reference, opts []remote.Option) (*remote.Descriptor, error) {
	var got *remote.Descriptor
	err := c.retry(ctx, func() error {
		var err error
		got, err = remote.Get(r, opts...)
		return classify(err)
	})
	return got, err
}

func pickPlatform(indexBytes []byte, want ocispec.Platform) (ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(indexBytes, &idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("parse index: %w", err)
	}
	var have []string
	for _, m := range idx.Manifests {
		if m.Platform == nil || !image.IsManifest(m.MediaType) {
			continue
		}
		if platformMatches(want, *m.Platform) {
			return m, nil
		}
		// Attestation manifests (buildx provenance/SBOM) are not platforms anyone can pick.
		if m.Platform.OS != "unknown" {
			have = append(have, platformString(*m.Platform))
		}
	}
	if len(have) == 0 {
		return ocispec.Descriptor{}, fmt.Errorf("%w %s: the index lists no platform images", ErrNoPlatform, platformString(want))
	}
	return ocispec.Descriptor{}, fmt.Errorf("%w %s: the image has %s", ErrNoPlatform, platformString(want), strings.Join(have, ", "))
}

// checkConfigPlatform fails with ErrNoPlatform when an image config names another OS or
// architecture than the client's (a config naming neither is accepted).
func checkConfigPlatform(d digest.Digest, bs BlobStore, want ocispec.Platform) error {
	rc, err := bs.Open(d)
	if err != nil {
		return err
	}
	defer rc.Close()
	var cfg ocispec.Image
	if err := json.NewDecoder(rc).Decode(&cfg); err != nil {
		return fmt.Errorf("image config %s: %w", d, err)
	}
	have := cfg.Platform
	if have.OS == "" && have.Architecture == "" {
		return nil
	}
	if !platformMatches(want, have) {
		return fmt.Errorf("%w %s: the image is %s", ErrNoPlatform, platformString(want), platformString(have))
	}
	return nil
}

// platformMatches compares OS, architecture and variant, where an absent variant means the
// architecture's baseline (arm64 is v8, amd64 is v1) and a wanted variant of "" accepts any.
func platformMatches(want, have ocispec.Platform) bool {
	want, have = platform.Normalize(want), platform.Normalize(have)
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return false
	}
	if want.Variant == "" {
		return true
	}
	return normVariant(want) == normVariant(have)
}

func normVariant(p ocispec.Platform) string {
	switch {
	case p.Variant != "":
		return p.Variant
	case p.Architecture == "arm64":
		return "v8"
	case p.Architecture == "amd64":
		return "v1"
	}
	return ""
}

func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func (c *Client) fetchBlobs(ctx context.Context, repo name.Repository, blobs []ocispec.Descriptor, bs BlobStore, progress Progress) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan ocispec.Descriptor)
	var wg sync.WaitGroup
	for range min(concurrentBlobs, len(blobs)) {
		wg.Go(func() {
			for d := range jobs {
				if err := c.fetchBlob(ctx, repo, d, bs, progress); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, d := range blobs {
		select {
		case jobs <- d:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// fetchBlob downloads one blob into bs, retrying the whole download (request and body) when the
// registry fails in a way that may pass. Bytes that do not match the digest never enter bs.
func (c *Client) fetchBlob(ctx context.Context, repo name.Repository, d ocispec.Descriptor, bs BlobStore, progress Progress) error {
	err := c.retry(ctx, func() error { return c.fetchBlobOnce(ctx, repo, d, bs, progress) })
	if err != nil {
		return fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return nil
}

func (c *Client) fetchBlobOnce(ctx context.Context, repo name.Repository, d ocispec.Descriptor, bs BlobStore, progress Progress) error {
	l, err := remote.Layer(repo.Digest(d.Digest.String()), c.remoteOptions(ctx)...)
	if err != nil {
		return classify(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return classify(err)
	}
	defer rc.Close()
	r := &sizedReader{r: rc, desc: d, progress: progress, count: &c.count.pulled}
	if progress != nil {
		progress(d, 0, d.Size)
	}
	if err := bs.Ingest(d.Digest, r); err != nil {
		return classify(err)
	}
	return nil
}

// sizedReader enforces the manifest's size, so a registry cannot stream an endless body into the
// store, and reports progress as bytes arrive.
type sizedReader struct {
	r        io.Reader
	desc     ocispec.Descriptor
	n        int64
	progress Progress
	count    *atomic.Int64
}

func (s *sizedReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.count != nil {
		s.count.Add(int64(n))
	}
	if s.n > s.desc.Size {
		return n, fmt.Errorf("registry sent more than the %d bytes the manifest lists", s.desc.Size)
	}
	if s.progress != nil && n > 0 {
		s.progress(s.desc, s.n, s.desc.Size)
	}
	if err == io.EOF && s.n < s.desc.Size {
		return n, fmt.Errorf("registry sent %d of %d bytes: %w", s.n, s.desc.Size, io.ErrUnexpectedEOF)
	}
	if err != nil && err != io.EOF {
		// go-containerregistry checks the digest as the last byte passes.
		err = asDigestError(err, s.desc.Digest)
	}
	return n, err
}

// remoteOptions configures go-containerregistry for one operation. Its own retries are turned
// off (one step, no status codes): Client.retry retries whole operations instead, body reads
// included, and can say how many tries it made. Without this, a 503 would be tried 3 times by
// go-containerregistry inside each of strata's tries.
func (c *Client) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(c.roundTripper()),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithUserAgent("strata"),
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
		remote.WithRetryStatusCodes(),
		remote.WithRetryPredicate(func(error) bool { return false }),
	}
}

// classify turns go-containerregistry errors into the failures users act on differently, each
// with a one-line message: unauthorized, not found, another status (StatusError), a stall
// (ErrTimeout), a broken or impossible connection (ErrUnreachable).
func classify(err error) error {
	if err == nil || errors.Is(err, ErrUnreachable) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotFound) ||
		errors.Is(err, ErrTimeout) {
		return err
	}
	var serr *StatusError
	if errors.As(err, &serr) {
		return err
	}
	var derr *DigestError
	if errors.As(err, &derr) {
		return derr // "ingest …" and the like would only repeat the digest
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden ||
			hasCode(terr, transport.UnauthorizedErrorCode, transport.DeniedErrorCode):
			return newAuthError(terr)
		case terr.StatusCode == http.StatusNotFound ||
			hasCode(terr, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			return fmt.Errorf("%w (%v)", ErrNotFound, err)
		}
		return newStatusError(terr)
	}
	var stall *stallError
	if errors.As(err, &stall) {
		// The stall names its request; the wrapping url.Error would repeat it with the query.
		return fmt.Errorf("%w: %w", ErrTimeout, stall)
	}
	var nerr net.Error
	if errors.As(err, &nerr) || errors.Is(err, errPlainHTTP) {
		return fmt.Errorf("%w: %w", ErrUnreachable, describeNet(err))
	}
	return err
}

// authError is a 401 or 403: it names the registry and says how to give strata credentials,
// because the request's URL alone leaves the user guessing which login is missing or wrong.
type authError struct {
	host   string
	denied bool // 403: the credentials were accepted but lack the permission
}

func newAuthError(terr *transport.Error) *authError {
	e := &authError{host: "the registry", denied: terr.StatusCode == http.StatusForbidden}
	if terr.Request != nil && terr.Request.URL != nil {
		e.host = terr.Request.URL.Host
	}
	return e
}

func (e *authError) Error() string {
	if e.denied {
		return fmt.Sprintf("unauthorized: %s denied access with the credentials strata found for it; "+
			"check they may pull or push this repository (docker login %s)", e.host, e.host)
	}
	return fmt.Sprintf("unauthorized: %s refused the credentials strata found for it (or it needs some and "+
		"there are none): run `docker login %s` (strata reads $DOCKER_CONFIG/config.json, "+
		"default ~/.docker/config.json)", e.host, e.host)
}

func (e *authError) Is(target error) bool { return target == ErrUnauthorized }

func hasCode(terr *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range terr.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}
