package solver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/store"
)

// Resolver finds base images: local tags first, then what a reference resolved to before (unless
// Pull), then the registry. Images it returns have every blob in the store.
type Resolver struct {
	Store    *store.Store
	Registry *registry.Client
	Progress *progress.Recorder
	Pull     bool // resolve remote tags again (--pull)

	mu   sync.Mutex
	memo map[string]digest.Digest
}

// baseImage is a resolved image as a starting filesystem.
type baseImage struct {
	manifest digest.Digest
	config   dockerspec.DockerOCIImage
	fs       fsState
	history  []ocispec.History
	created  time.Time
}

// NormalizeRef turns "busybox" into "docker.io/library/busybox:latest", the name tags are kept under.
func NormalizeRef(ref string) (string, error) {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return reference.TagNameOnly(n).String(), nil
}

// ResolveImageConfig satisfies the frontend's resolver: the manifest digest and config of ref.
func (r *Resolver) ResolveImageConfig(ctx context.Context, ref string, p ocispec.Platform) (string, dockerspec.DockerOCIImage, error) {
	d, err := r.resolve(ctx, ref, p)
	if err != nil {
		return "", dockerspec.DockerOCIImage{}, err
	}
	_, cfg, err := r.readImage(d)
	if err != nil {
		return "", dockerspec.DockerOCIImage{}, err
	}
	return d.String(), cfg, nil
}

func (r *Resolver) resolve(ctx context.Context, ref string, p ocispec.Platform) (digest.Digest, error) {
	if p.Architecture == "" {
		p = platform.Host()
	}
	p = platform.Normalize(p)
	mk := ref + "|" + platform.Format(p)
	r.mu.Lock()
	if d, ok := r.memo[mk]; ok {
		r.mu.Unlock()
		return d, nil
	}
	r.mu.Unlock()
	d, err := r.resolveUncached(ctx, ref, p)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	if r.memo == nil {
		r.memo = map[string]digest.Digest{}
	}
	r.memo[mk] = d
	r.mu.Unlock()
	return d, nil
}

func (r *Resolver) resolveUncached(ctx context.Context, ref string, p ocispec.Platform) (digest.Digest, error) {
	if strings.HasPrefix(ref, "oci-layout://") {
		return r.importLayout(strings.TrimPrefix(ref, "oci-layout://"))
	}
	name, err := NormalizeRef(ref)
	if err != nil {
		return "", err
	}
	if n, err := reference.ParseNormalizedNamed(ref); err == nil {
		if c, ok := n.(reference.Canonical); ok && r.Store.Has(c.Digest()) {
			if d, ok := r.forPlatform(c.Digest(), p); ok {
				return d, nil
			}
		}
	}
	if d, err := r.Store.Lookup(name); err == nil {
		// A local tag may name a multi-platform build (an index) or an image of another
		// platform; only the platform's own image answers.
		if d, ok := r.forPlatform(d, p); ok {
			return d, nil
		}
	}
	// The host's platform keeps the plain name, as strata remembered it before it built for
	// other platforms.
	remembered := name
	if !platform.Equal(p, platform.Host()) {
		remembered = name + "@" + platform.Format(p)
	}
	if !r.Pull {
		if d, err := r.Store.Resolved(remembered); err == nil {
			return d, nil
		}
	}
	if r.Registry == nil {
		return "", fmt.Errorf("image %s is not in the local store and no registry is configured", ref)
	}
	v := r.Progress.Start("[internal] load metadata for " + name)
	// Only the manifest and config: layers are fetched when a step runs on them or an output
	// needs their bytes, so a fully cached build moves no layer bytes.
	img, repo, err := r.Registry.PullLazyFor(ctx, ref, p, r.Store)
	if err != nil {
		v.Fail(err)
		return "", err
	}
	if _, err := r.Store.WriteBlob(img.ManifestBytes); err != nil {
		return "", err
	}
	if _, err := r.Store.WriteBlob(img.ConfigBytes); err != nil {
		return "", err
	}
	if err := r.recordLazyLayers(img, repo); err != nil {
		return "", err
	}
	v.Done()
	if err := r.Store.SetResolved(remembered, img.Manifest.Digest); err != nil {
		return "", err
	}
	return img.Manifest.Digest, nil
}

// recordLazyLayers writes a layer record for each layer of a pulled image the store cannot
// provide yet, naming the repository its blob comes from.
func (r *Resolver) recordLazyLayers(img *image.Image, repo string) error {
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(img.ConfigBytes, &cfg); err != nil {
		return fmt.Errorf("image config %s: %w", img.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(img.Layers) {
		return fmt.Errorf("image %s: config lists %d layers, manifest %d", img.Manifest.Digest, len(cfg.RootFS.DiffIDs), len(img.Layers))
	}
	for i, desc := range img.Layers {
		diffID := cfg.RootFS.DiffIDs[i]
		// Another image's blob for this diffID is used only once its unpacked snapshot proved
		// it is that diffID (unpackVerified): a config may name any diffID for its own blob,
		// and a lying image must not make an honest one use its blob.
		if l, err := r.Store.GetLayer(diffID); err == nil && r.Store.Has(l.Digest) && (l.Digest == desc.Digest || r.Store.HasSnapshot(diffID)) {
			continue
		}
		l := store.Layer{DiffID: diffID, Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size, ContentID: diffID, Remote: repo}
		if err := r.Store.PutLayer(l); err != nil {
			return err
		}
	}
	return nil
}

// importLayout copies an image from an OCI layout dir (PATH, PATH:tag or PATH@digest) into the store.
func (r *Resolver) importLayout(spec string) (digest.Digest, error) {
	dir, want := spec, ""
	if i := strings.LastIndex(spec, "@"); i > 0 {
		dir, want = spec[:i], spec[i+1:]
	} else if i := strings.LastIndex(spec, ":"); i > strings.LastIndex(spec, "/") {
		dir, want = spec[:i], spec[i+1:]
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return "", fmt.Errorf("oci-layout %s: %w", dir, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return "", fmt.Errorf("oci-layout %s: index.json: %w", dir, err)
	}
	var pick *ocispec.Descriptor
	for i, m := range idx.Manifests {
		if want == "" || m.Digest.String() == want || m.Annotations[ocispec.AnnotationRefName] == want {
			pick = &idx.Manifests[i]
			break
		}
	}
	if pick == nil {
		return "", fmt.Errorf("oci-layout %s: no image %q in index.json", dir, want)
	}
	ingest := func(d digest.Digest) error {
		f, err := os.Open(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()))
		if err != nil {
			return fmt.Errorf("oci-layout %s: %w", dir, err)
		}
		defer f.Close()
		return r.Store.Ingest(d, f)
	}
	if err := ingest(pick.Digest); err != nil {
		return "", err
	}
	mdata, err := r.Store.ReadBlob(pick.Digest)
	if err != nil {
		return "", err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mdata, &m); err != nil {
		return "", fmt.Errorf("oci-layout %s: manifest: %w", dir, err)
	}
	if m.Config.Digest == "" {
		return "", fmt.Errorf("oci-layout %s: %s is not an image manifest (indexes are not supported here)", dir, pick.Digest)
	}
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := ingest(d.Digest); err != nil {
			return "", err
		}
	}
	return pick.Digest, nil
}

func (r *Resolver) readImage(d digest.Digest) (ocispec.Manifest, dockerspec.DockerOCIImage, error) {
	var m ocispec.Manifest
	var cfg dockerspec.DockerOCIImage
	data, err := r.Store.ReadBlob(d)
	if err != nil {
		return m, cfg, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, cfg, fmt.Errorf("manifest %s: %w", d, err)
	}
	data, err = r.Store.ReadBlob(m.Config.Digest)
	if err != nil {
		return m, cfg, err
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return m, cfg, fmt.Errorf("image config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return m, cfg, fmt.Errorf("image %s: config lists %d layers, manifest %d", d, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	return m, cfg, nil
}

// forPlatform picks p's image out of a stored manifest or index: an index's entry for p, or the
// manifest itself (whatever its platform: as BuildKit, a single-platform image is used and the
// frontend warns when it is another platform's).
func (r *Resolver) forPlatform(d digest.Digest, p ocispec.Platform) (digest.Digest, bool) {
	data, err := r.Store.ReadBlob(d)
	if err != nil {
		return "", false
	}
	var m struct {
		MediaType string               `json:"mediaType"`
		Config    ocispec.Descriptor   `json:"config"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return "", false
	}
	if m.Config.Digest == "" {
		for _, c := range m.Manifests {
			if c.Platform != nil && platform.Equal(*c.Platform, p) && r.Store.Has(c.Digest) {
				return c.Digest, true
			}
		}
		return "", false
	}
	return d, r.Store.Has(m.Config.Digest)
}

// Load returns a resolved image as a filesystem for platform p. dgst, when known, skips
// resolution.
func (r *Resolver) Load(ctx context.Context, ref, dgst string, p ocispec.Platform) (*baseImage, error) {
	var d digest.Digest
	var err error
	if dgst != "" {
		d, err = digest.Parse(dgst)
		if err != nil {
			return nil, err
		}
		if !r.Store.Has(d) {
			if d, err = r.resolve(ctx, ref, p); err != nil {
				return nil, err
			}
		}
	} else if d, err = r.resolve(ctx, ref, p); err != nil {
		return nil, err
	}
	m, cfg, err := r.readImage(d)
	if err != nil {
		return nil, err
	}
	b := &baseImage{manifest: d, config: cfg, history: append([]ocispec.History(nil), cfg.History...)}
	if cfg.Created != nil {
		b.created = *cfg.Created
	}
	for i, desc := range m.Layers {
		diffID := cfg.RootFS.DiffIDs[i]
		l, err := r.Store.GetLayer(diffID)
		if errors.Is(err, fs.ErrNotExist) || (err == nil && !r.Store.Available(l)) {
			l = store.Layer{DiffID: diffID, Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size, ContentID: diffID}
			if !r.Store.Has(desc.Digest) {
				return nil, fmt.Errorf("image %s: layer %s is missing from the store; pull again with --pull", ref, desc.Digest)
			}
			if err := r.Store.PutLayer(l); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
		b.fs = b.fs.with(l)
	}
	return b, nil
}
