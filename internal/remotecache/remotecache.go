package remotecache

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/atomicfile"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/store"
)

// layoutPrefix marks a Layer.Remote that is an OCI layout directory rather than a repository.
const layoutPrefix = "oci-layout:"

// Fetcher brings lazy blobs into the store from wherever they live: a registry repository or an
// OCI layout directory. The bytes are verified against the digest before they become visible.
type Fetcher struct {
	Registry *registry.Client
	Store    *store.Store

	mu   sync.Mutex
	gone []BlobGoneError // layers found gone, in order, until TakeGone
}

// Fetch makes l's blob present in the store.
func (f *Fetcher) Fetch(ctx context.Context, l store.Layer) error {
	return f.goneLayer(f.fetch(ctx, l.Remote, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}), l)
}

// TakeGone returns the layers found gone since the last call: fetches run in parallel, and a
// failed build reports one error, while the build flow forgets them all before trying again.
func (f *Fetcher) TakeGone() []BlobGoneError {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.gone
	f.gone = nil
	return g
}

// BlobGoneError is a lazy layer whose blob the repository (or cache directory) that was to serve
// it no longer has: a registry's garbage collection or retention policy deleted it after the
// cache was exported. No retry brings it back; the build flow instead forgets the layer and runs
// again the steps that made it (see build.Run).
type BlobGoneError struct {
	DiffID digest.Digest // the layer's, when the caller knew it
	Digest digest.Digest
	Remote string
	Err    error
}

func (e *BlobGoneError) Error() string {
	return fmt.Sprintf("blob %s of cache %s is gone (deleted since the cache was exported): %v", e.Digest, e.Remote, e.Err)
}

func (e *BlobGoneError) Unwrap() error { return e.Err }

// goneLayer names l's diffID in a BlobGoneError and keeps it for TakeGone, so the build can
// forget the layer.
func (f *Fetcher) goneLayer(err error, l store.Layer) error {
	var gone *BlobGoneError
	if errors.As(err, &gone) {
		gone.DiffID = l.DiffID
		f.mu.Lock()
		f.gone = append(f.gone, *gone)
		f.mu.Unlock()
	}
	return err
}

// FetchStream is Fetch that also copies the blob's bytes to tee as they arrive, so the caller
// can unpack while the blob downloads. It reports whether tee saw the whole blob in one pass:
// when the download was retried, or the store already had the blob, it did not, and the caller
// reads the stored blob instead. The blob is verified before it becomes visible in the store,
// whatever tee was sent.
func (f *Fetcher) FetchStream(ctx context.Context, l store.Layer, tee io.Writer) (streamed bool, err error) {
	ts := &teeStore{Store: f.Store, tee: tee}
	err = f.goneLayer(f.fetchInto(ctx, ts, l.Remote, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}), l)
	return err == nil && ts.passes == 1 && ts.whole, err
}

// teeStore copies the bytes of its first Ingest to tee.
type teeStore struct {
	*store.Store
	tee    io.Writer
	passes int
	whole  bool
}

func (t *teeStore) Ingest(d digest.Digest, r io.Reader) error {
	t.passes++
	if t.passes > 1 {
		return t.Store.Ingest(d, r) // a retry: tee already has a partial copy
	}
	err := t.Store.Ingest(d, io.TeeReader(r, t.tee))
	t.whole = err == nil
	return err
}

func (f *Fetcher) fetch(ctx context.Context, remote string, d ocispec.Descriptor) error {
	return f.fetchInto(ctx, f.Store, remote, d)
}

// fetchInto puts the blob into sink: the store, or the store seen through a teeStore.
func (f *Fetcher) fetchInto(ctx context.Context, sink registry.BlobStore, remote string, d ocispec.Descriptor) error {
	if f.Store.Has(d.Digest) {
		return nil
	}
	if remote == "" {
		return fmt.Errorf("blob %s is not in the store and has no known source", d.Digest)
	}
	if dir, ok := strings.CutPrefix(remote, layoutPrefix); ok {
		fh, err := os.Open(layoutBlob(dir, d.Digest))
		if errors.Is(err, fs.ErrNotExist) {
			return &BlobGoneError{Digest: d.Digest, Remote: dir, Err: err}
		}
		if err != nil {
			return fmt.Errorf("cache %s: %w", dir, err)
		}
		defer fh.Close()
		if err := sink.Ingest(d.Digest, io.LimitReader(fh, d.Size+1)); err != nil {
			return fmt.Errorf("cache %s: %w", dir, err)
		}
		return nil
	}
	err := f.Registry.FetchBlob(ctx, remote, d, sink, nil)
	if errors.Is(err, registry.ErrNotFound) {
		// The cache's manifest still names the blob, but its registry deleted it.
		return &BlobGoneError{Digest: d.Digest, Remote: remote, Err: err}
	}
	return err
}

// IsRepository reports whether a Layer.Remote names a registry repository (not a directory).
func IsRepository(remote string) bool {
	return remote != "" && !strings.HasPrefix(remote, layoutPrefix)
}

func layoutBlob(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// ---- import ----

type entry struct {
	rec   store.Record
	layer *store.Layer
}

// Index is the union of the imported caches: the first cache that knows a key answers it.
type Index struct {
	entries    map[string]entry
	mounts     map[string]importedMount
	selections map[string]Selection         // by memo key (selections.go)
	inputs     map[string]map[string]string // step position → inputs, for miss reasons
}

// LookupInputs satisfies solver.RemoteCache.
func (ix *Index) LookupInputs(position string) (map[string]string, bool) {
	if ix == nil {
		return nil, false
	}
	in, ok := ix.inputs[position]
	return in, ok
}

type importedMount struct {
	Mount
	remote string
}

// Lookup satisfies solver.RemoteCache.
func (ix *Index) Lookup(key string) (*store.Record, *store.Layer, bool) {
	if ix == nil {
		return nil, nil, false
	}
	e, ok := ix.entries[key]
	if !ok {
		return nil, nil, false
	}
	r := e.rec
	var l *store.Layer
	if e.layer != nil {
		c := *e.layer
		l = &c
	}
	return &r, l, true
}

// Forget drops the records whose layer is the blob d (gone from its registry), so the steps that
// made it are run again rather than answered from this cache. It reports how many it dropped.
func (ix *Index) Forget(d digest.Digest) (n int) {
	if ix == nil {
		return 0
	}
	for k, e := range ix.entries {
		if e.layer != nil && e.layer.Digest == d {
			delete(ix.entries, k)
			n++
		}
	}
	return n
}

// Len is the number of records imported.
func (ix *Index) Len() int { return len(ix.entries) }

func (ix *Index) add(c *Config, remote string) {
	for _, r := range c.Records {
		if _, dup := ix.entries[r.Key]; dup {
			continue
		}
		e := entry{rec: store.Record{Key: r.Key, Step: r.Step, Empty: r.Layer == nil, Created: r.Created, Elapsed: r.Elapsed}}
		if r.Layer != nil {
			l := r.Layer.storeLayer(remote)
			e.layer = &l
			e.rec.Layer = l.DiffID
			e.rec.Size = l.Size
		}
		ix.entries[r.Key] = e
		if _, dup := ix.inputs[r.Position]; r.Position != "" && r.Inputs != nil && !dup {
			ix.inputs[r.Position] = r.Inputs
		}
	}
	for _, m := range c.Mounts {
		if _, dup := ix.mounts[m.ID]; !dup {
			ix.mounts[m.ID] = importedMount{Mount: m, remote: remote}
		}
	}
	ix.addSelections(c)
}

// Import reads every cache's manifest and config, in order. A cache that cannot be read is a
// warning (the build goes on without it), returned in warnings, one line each.
func Import(ctx context.Context, specs []Spec, f *Fetcher) (ix *Index, warnings []string) {
	ix = &Index{entries: map[string]entry{}, mounts: map[string]importedMount{}, inputs: map[string]map[string]string{}}
	for _, sp := range specs {
		c, remote, err := importOne(ctx, sp, f)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("cache %s not imported: %v", sp, err))
			continue
		}
		ix.add(c, remote)
	}
	return ix, warnings
}

// ErrNoCache is a cache that does not exist yet (its first build has not exported it).
var ErrNoCache = errors.New("not found (no build has exported it yet)")

func importOne(ctx context.Context, sp Spec, f *Fetcher) (*Config, string, error) {
	switch sp.Type {
	case "registry":
		repo, desc, body, err := f.Registry.Manifest(ctx, sp.Ref)
		if errors.Is(err, registry.ErrNotFound) {
			return nil, "", ErrNoCache
		}
		if err != nil {
			return nil, "", err
		}
		if image.IsIndex(desc.MediaType) {
			c, err := readIndex(ctx, f, repo, desc, body)
			return c, repo, err
		}
		c, err := readManifest(ctx, f, repo, desc, body)
		return c, repo, err
	case "local":
		data, err := os.ReadFile(filepath.Join(sp.Dir, "index.json"))
		if errors.Is(err, os.ErrNotExist) {
			return nil, "", ErrNoCache
		}
		if err != nil {
			return nil, "", err
		}
		var idx ocispec.Index
		if err := json.Unmarshal(data, &idx); err != nil || len(idx.Manifests) == 0 {
			return nil, "", fmt.Errorf("%s: index.json lists no cache manifest", sp.Dir)
		}
		remote := layoutPrefix + sp.Dir
		desc := idx.Manifests[0]
		if err := f.fetch(ctx, remote, desc); err != nil {
			return nil, "", err
		}
		body, err := f.Store.ReadBlob(desc.Digest)
		if err != nil {
			return nil, "", err
		}
		c, err := readManifest(ctx, f, remote, desc, body)
		return c, remote, err
	}
	return nil, "", fmt.Errorf("type=%s cannot be imported", sp.Type)
}

// readIndex reads the inline caches of a multi-platform image (--cache-to type=inline with several
// --platforms): each platform's image carries its own steps' records, and together they are one
// cache. Keys name their platform, so no platform's record answers another's step.
func readIndex(ctx context.Context, f *Fetcher, repo string, desc ocispec.Descriptor, body []byte) (*Config, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
	}
	all := &Config{Version: Version}
	for _, child := range idx.Manifests {
		if !image.IsManifest(child.MediaType) || child.Platform == nil || child.Platform.OS == "unknown" {
			continue // attestations and nested indexes carry no inline cache
		}
		_, cdesc, cbody, err := f.Registry.Manifest(ctx, repo+"@"+child.Digest.String())
		if err != nil {
			return nil, err
		}
		c, err := readManifest(ctx, f, repo, cdesc, cbody)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		all.Records = append(all.Records, c.Records...)
		all.Mounts = append(all.Mounts, c.Mounts...)
		all.Selections = append(all.Selections, c.Selections...)
	}
	return all, nil
}

// readManifest reads a cache artifact, or an image carrying an inline cache in its config.
func readManifest(ctx context.Context, f *Fetcher, remote string, desc ocispec.Descriptor, body []byte) (*Config, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("manifest %s is neither a strata cache nor an image", desc.Digest)
	}
	if m.Config.Size > image.MaxConfigSize {
		return nil, fmt.Errorf("cache config of %d bytes is too large", m.Config.Size)
	}
	if err := f.fetch(ctx, remote, m.Config); err != nil {
		return nil, err
	}
	data, err := f.Store.ReadBlob(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	switch {
	case image.IsManifest(desc.MediaType) || m.Config.MediaType == ocispec.MediaTypeImageConfig || m.Config.MediaType == image.MediaTypeDockerConfig:
		var cfg map[string]json.RawMessage
		if err := json.Unmarshal(data, &cfg); err != nil {
			return nil, fmt.Errorf("image config %s: %w", m.Config.Digest, err)
		}
		inline, ok := cfg[InlineKey]
		if !ok {
			return nil, fmt.Errorf("%s is an image without an inline cache (build it with --cache-to type=inline)", desc.Digest)
		}
		return parseConfig(inline)
	}
	return nil, fmt.Errorf("manifest %s has config type %s, not a strata cache", desc.Digest, m.Config.MediaType)
}

// ---- export ----

// artifactConfig is the cache artifact's config: an image config with no layers of its own (so
// tools that only read image configs, such as skopeo inspect, accept the artifact) carrying the
// cache under InlineKey, the same field an inline cache uses in a real image's config.
type artifactConfig struct {
	Architecture string         `json:"architecture"`
	OS           string         `json:"os"`
	RootFS       ocispec.RootFS `json:"rootfs"`
	Cache        *Config        `json:"strata.cache.v1"`
}

// Entry is a step result to export.
type Entry struct {
	Record store.Record
	Layer  *store.Layer // nil for an empty step
	Parent digest.Digest
	// Position and Inputs: see Record.
	Position string
	Inputs   map[string]string
	// Selection, when set, makes this entry a selection memo instead of a record
	// (SelectionEntries); Record and Layer are then unused.
	Selection *Selection
}

// BuildConfig turns entries into a cache config (sorted, de-duplicated: the same records give the
// same bytes).
func BuildConfig(entries []Entry, mounts []Mount) *Config {
	c := &Config{Version: Version, Records: []Record{}, Mounts: mounts}
	// The same step can appear in several stages (WORKDIR /w at the top of each); stages run in
	// parallel, so which came first varies. Keep the smallest position so the bytes do not.
	entries = slices.Clone(entries)
	slices.SortStableFunc(entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Record.Key, b.Record.Key), cmp.Compare(a.Position, b.Position))
	})
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Selection != nil || seen[e.Record.Key] || (!e.Record.Empty && e.Layer == nil) {
			continue
		}
		seen[e.Record.Key] = true
		r := Record{Key: e.Record.Key, Step: e.Record.Step, Parent: e.Parent, Created: e.Record.Created, Elapsed: e.Record.Elapsed,
			Position: e.Position, Inputs: e.Inputs}
		if e.Layer != nil {
			r.Layer = &Layer{Digest: e.Layer.Digest, MediaType: e.Layer.MediaType, Size: e.Layer.Size, DiffID: e.Layer.DiffID, ContentID: e.Layer.ContentID}
		}
		c.Records = append(c.Records, r)
	}
	sort.Slice(c.Records, func(i, j int) bool { return c.Records[i].Key < c.Records[j].Key })
	trimInputs(c.Records)
	sort.Slice(c.Mounts, func(i, j int) bool { return c.Mounts[i].ID < c.Mounts[j].ID })
	c.Selections = buildSelections(entries)
	return c
}

// blobs lists the blobs a config references with where each lives when the store lacks it.
func blobs(entries []Entry, mounts []mountBlob) []registry.Blob {
	var out []registry.Blob
	seen := map[digest.Digest]bool{}
	for _, e := range entries {
		if e.Layer == nil || seen[e.Layer.Digest] {
			continue
		}
		seen[e.Layer.Digest] = true
		out = append(out, registry.Blob{Descriptor: ocispec.Descriptor{MediaType: e.Layer.MediaType, Digest: e.Layer.Digest, Size: e.Layer.Size}, Remote: e.Layer.Remote})
	}
	for _, m := range mounts {
		if !seen[m.Digest] {
			seen[m.Digest] = true
			out = append(out, registry.Blob(m))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out
}

// mountBlob is one blob of an exported cache mount and where it lives if not in the store.
type mountBlob registry.Blob

// Export writes the cache: blobs first, the manifest last, so a reader sees the old cache or the
// new one, never a manifest whose blobs are missing.
// Notes about what was left out (a cache mount over its size cap) go to warn.
func Export(ctx context.Context, sp Spec, entries []Entry, ms *MountSet, f *Fetcher, warn func(string), progress registry.Progress) error {
	var mounts []Mount
	var mblobs []mountBlob
	if sp.Mounts && ms != nil {
		var err error
		var notes []string
		if mounts, mblobs, notes, err = ms.export(ctx, sp.MountsMaxSize); err != nil {
			return fmt.Errorf("cache mounts: %w", err)
		}
		for _, n := range notes {
			warn(n)
		}
	}
	cfgBytes, err := json.Marshal(artifactConfig{
		Architecture: runtime.GOARCH, OS: "linux",
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
		Cache:  BuildConfig(entries, mounts),
	})
	if err != nil {
		return err
	}
	cd, err := f.Store.WriteBlob(cfgBytes)
	if err != nil {
		return err
	}
	bl := blobs(entries, mblobs)
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfgBytes))},
		Layers:       []ocispec.Descriptor{},
	}
	for _, b := range bl {
		m.Layers = append(m.Layers, b.Descriptor)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	switch sp.Type {
	case "registry":
		// Blobs known only from a cache directory are fetched first: a registry can mount or
		// stream only from a repository.
		for i, b := range bl {
			if b.Remote != "" && !IsRepository(b.Remote) {
				if err := f.fetch(ctx, b.Remote, b.Descriptor); err != nil {
					return err
				}
				bl[i].Remote = ""
			}
		}
		all := append([]registry.Blob{{Descriptor: m.Config}}, bl...)
		return f.Registry.PushManifest(ctx, []string{sp.Ref}, ocispec.MediaTypeImageManifest, mb, all, f.Store, progress)
	case "local":
		return writeLayout(ctx, sp.Dir, mb, m, bl, f)
	}
	return fmt.Errorf("type=%s cannot be exported here", sp.Type)
}

// writeLayout writes an OCI layout directory: blobs (hard-linked from the store when possible),
// then index.json atomically. Blobs no longer referenced are removed afterwards, so the directory
// does not grow without bound across builds.
func writeLayout(ctx context.Context, dir string, mb []byte, m ocispec.Manifest, bl []registry.Blob, f *Fetcher) error {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	md, err := f.Store.WriteBlob(mb)
	if err != nil {
		return err
	}
	keep := map[digest.Digest]bool{md: true, m.Config.Digest: true}
	for _, b := range bl {
		keep[b.Digest] = true
	}
	for d := range keep {
		var remote string
		for _, b := range bl {
			if b.Digest == d {
				remote = b.Remote
			}
		}
		if strings.TrimPrefix(remote, layoutPrefix) == dir {
			if _, err := os.Stat(layoutBlob(dir, d)); err == nil {
				continue // already there: imported from this very directory
			}
		}
		if err := f.fetch(ctx, remote, ocispec.Descriptor{Digest: d, Size: sizeOf(bl, d)}); err != nil {
			return err
		}
		if err := placeBlob(f.Store.BlobPath(d), layoutBlob(dir, d)); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), atomicfile.Options{Perm: 0o644}); err != nil {
		return err
	}
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactType, Digest: md, Size: int64(len(mb)),
			Annotations: map[string]string{ocispec.AnnotationRefName: "latest"}}},
	}
	data, _ := json.Marshal(idx)
	if err := atomicfile.Write(filepath.Join(dir, "index.json"), data, atomicfile.Options{Perm: 0o644}); err != nil {
		return err
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	for _, e := range ents {
		if !keep[digest.NewDigestFromEncoded(digest.SHA256, e.Name())] {
			os.Remove(filepath.Join(dir, "blobs", "sha256", e.Name()))
		}
	}
	return nil
}

func sizeOf(bl []registry.Blob, d digest.Digest) int64 {
	for _, b := range bl {
		if b.Digest == d {
			return b.Size
		}
	}
	return 1 << 40
}

// placeBlob hard-links (or copies) a store blob into a layout, appearing only complete.
func placeBlob(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	tmp := dst + ".tmp"
	os.Remove(tmp)
	if err := os.Link(src, tmp); err != nil {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(tmp)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			os.Remove(tmp)
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			os.Remove(tmp)
			return err
		}
		out.Close()
	}
	return os.Rename(tmp, dst)
}

// maxInputsBytes bounds the step inputs one config carries; past it, per-file entries are
// dropped (the miss reason then names no file; keys are unaffected).
const maxInputsBytes = 4 << 20

func trimInputs(recs []Record) {
	budget := maxInputsBytes
	for i := range recs {
		n := 0
		for k, v := range recs[i].Inputs {
			n += len(k) + len(v) + 8
		}
		if n <= budget {
			budget -= n
			continue
		}
		slim := map[string]string{"files-omitted": "true"} // see solver.fileChanges
		for k, v := range recs[i].Inputs {
			if !strings.HasPrefix(k, "file:") {
				slim[k] = v
			}
		}
		recs[i].Inputs = slim
	}
}
