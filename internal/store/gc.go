package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Garbage collection.
//
// The store holds three kinds of evictable entries, each with a last-use time:
//   - cache records (cache/<key>.json; last use = file mtime, refreshed by GetRecord),
//   - pulled base images (resolved/<ref>; last use = file mtime, refreshed by Resolved), which are
//     cache too: evicting one only costs a pull,
//   - cache-mount directories (cachemounts/<id>; last use = dir mtime, refreshed by CacheMountDir).
//
// Content (blobs, layers/<diffID>.json, snapshots/<diffID>) is never evicted directly: it is kept
// while something kept reaches it — a tagged image (manifest → config → layer blobs + diffIDs), a
// kept record (record → layer diffID → layer JSON → blob digest, snapshot dir), a kept base image,
// or the lease of the process running GC — and swept otherwise. Tags are never evicted.
//
// GC only runs under the exclusive store lock, so no build is running: builds hold the lock
// shared for their whole life, so nothing a running build uses can disappear.

const snapshotSizesFile = "snapshot-sizes.json"

// UsageEntry is one line of `strata du`.
type UsageEntry struct {
	Kind  string
	Count int
	Size  int64
}

var usageKinds = []struct{ kind, dir string }{
	{"blobs", "blobs/sha256"},
	{"layers", "layers"},
	{"snapshots", "snapshots"},
	{"cache records", "cache"},
	{"base images", "resolved"},
	{"tags", "tags"},
	{"cache mounts", "cachemounts"},
	{"step history", "records"},
	{"stat caches", "statcache"},
	{"selection memos", "selections"},
	{"snapshot file indexes", "snapfiles"},
	// Build records (internal/history) reference no content; GC never removes them (history
	// prune bounds them) but they take space all the same. The directory appears with the
	// first record.
	{"build history", "history"},
}

// Usage sums the store by kind (apparent size of regular files; per-process scratch under tmp/
// is not counted). The last entry, "other", holds the top-level files.
func (s *Store) Usage() ([]UsageEntry, error) {
	sizes := s.loadSnapshotSizes()
	var out []UsageEntry
	for _, k := range usageKinds {
		ents, err := os.ReadDir(filepath.Join(s.root, k.dir))
		if err != nil && !(errors.Is(err, fs.ErrNotExist) && k.dir == "history") {
			return nil, err
		}
		e := UsageEntry{Kind: k.kind, Count: len(ents)}
		for _, ent := range ents {
			p := filepath.Join(s.root, k.dir, ent.Name())
			if k.dir == "snapshots" && ent.IsDir() {
				e.Size += sizes.get(p, ent.Name())
				continue
			}
			e.Size += treeSize(p)
		}
		out = append(out, e)
	}
	sizes.save() // before measuring the top-level files, the size cache among them
	other := UsageEntry{Kind: "other"}
	ents, _ := os.ReadDir(s.root)
	for _, ent := range ents {
		if ent.Type().IsRegular() {
			other.Count++
			other.Size += treeSize(filepath.Join(s.root, ent.Name()))
		}
	}
	out = append(out, other)
	return out, nil
}

// TotalUsage is the sum of Usage, the number GC compares with its limit.
func (s *Store) TotalUsage() (int64, error) {
	u, err := s.Usage()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range u {
		n += e.Size
	}
	return n, nil
}

// treeSize is the apparent size of the regular files at or below p.
func treeSize(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// snapshotSizes caches the size of snapshot dirs, which never change once committed, so GC after
// every build does not walk every unpacked layer.
type snapshotSizes struct {
	path    string
	m       map[string]int64
	seen    map[string]bool
	changed bool
}

func (s *Store) loadSnapshotSizes() *snapshotSizes {
	c := &snapshotSizes{path: filepath.Join(s.root, snapshotSizesFile), m: map[string]int64{}, seen: map[string]bool{}}
	readJSON(c.path, &c.m)
	return c
}

func (c *snapshotSizes) get(p, name string) int64 {
	c.seen[name] = true
	if n, ok := c.m[name]; ok {
		return n
	}
	n := treeSize(p)
	c.m[name] = n
	c.changed = true
	return n
}

// save writes the cache back, dropping snapshots that no longer exist; only Usage, which sees
// every snapshot, calls it.
func (c *snapshotSizes) save() {
	for k := range c.m {
		if !c.seen[k] {
			delete(c.m, k)
			c.changed = true
		}
	}
	if c.changed {
		writeJSON("", c.path, c.m)
	}
}

// RecordInfo is a cache record with its last use.
type RecordInfo struct {
	Record
	LastUsed time.Time
}

// Records lists cache records, most recently used first. Size falls back to the layer's blob size
// for records written before records carried it.
func (s *Store) Records() ([]RecordInfo, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "cache"))
	if err != nil {
		return nil, err
	}
	var out []RecordInfo
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		var r Record
		if readJSON(filepath.Join(s.root, "cache", e.Name()), &r) != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if r.Size == 0 && !r.Empty {
			var l Layer
			if readJSON(s.layerPath(r.Layer), &l) == nil {
				r.Size = l.Size
			}
		}
		out = append(out, RecordInfo{Record: r, LastUsed: info.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// Entry kinds in an inventory.
const (
	KindImage  = "tagged image"
	KindBase   = "base image"
	KindRecord = "cache record"
	KindMount  = "cache mount"
)

// Entry is one thing the store keeps and why (`strata du --verbose`).
type Entry struct {
	Kind     string // KindImage, KindBase, KindRecord, KindMount
	Name     string // tag, reference, step ("build 3/6 RUN npm ci") or cache mount dir
	ID       string // manifest digest, cache key, mount dir name
	Created  time.Time
	LastUsed time.Time     // zero for tags, which GC never evicts
	Elapsed  time.Duration // records: how long the step took
	// Size is the bytes on disk the entry keeps alive: its own file plus the blobs, layer
	// records and snapshots it reaches (content shared between entries counts in each).
	Size int64
}

// item is an entry with the content units it keeps alive.
type item struct {
	Entry
	path   string // the entry's own file or dir
	own    int64
	units  []string
	pinned bool
	evict  bool
}

// collector resolves reachability: items → units ("blob:<hex>", "layer:<hex>", "snap:<hex>").
type collector struct {
	s         *Store
	sizes     *snapshotSizes
	unitSize  map[string]int64
	unitPaths map[string]string
}

func (c *collector) unit(kind, hex string) (string, bool) {
	id := kind + ":" + hex
	if _, ok := c.unitSize[id]; ok {
		return id, true
	}
	var p string
	switch kind {
	case "blob":
		p = filepath.Join(c.s.root, "blobs", "sha256", hex)
	case "layer":
		p = filepath.Join(c.s.root, "layers", hex+".json")
	case "snap":
		p = filepath.Join(c.s.root, "snapshots", hex)
	}
	info, err := os.Lstat(p)
	if err != nil {
		return "", false
	}
	switch kind {
	case "snap":
		c.unitSize[id] = c.sizes.get(p, hex)
	default:
		c.unitSize[id] = info.Size()
	}
	c.unitPaths[id] = p
	return id, true
}

func (c *collector) add(units []string, kind, hex string) []string {
	if hex == "" {
		return units
	}
	if id, ok := c.unit(kind, hex); ok {
		units = append(units, id)
	}
	return units
}

// layerUnits is what a layer diffID keeps: its layer JSON, the blob it names, its snapshot.
func (c *collector) layerUnits(units []string, diffHex string) []string {
	units = c.add(units, "layer", diffHex)
	units = c.add(units, "snap", diffHex)
	var l Layer
	if readJSON(filepath.Join(c.s.root, "layers", diffHex+".json"), &l) == nil && l.Digest.Validate() == nil {
		units = c.add(units, "blob", l.Digest.Encoded())
	}
	return units
}

// imageUnits is what a manifest keeps: itself, its config, its layer blobs and its diffIDs' layers.
func (c *collector) imageUnits(units []string, d digest.Digest) []string {
	if d.Validate() != nil {
		return units
	}
	units = c.add(units, "blob", d.Encoded())
	data, err := c.s.ReadBlob(d)
	if err != nil {
		return units
	}
	var m struct {
		ocispec.Manifest
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(data, &m) != nil {
		return units
	}
	// A multi-platform build is tagged as an index: it keeps each platform's image.
	for _, child := range m.Manifests {
		if child.Digest != d {
			units = c.imageUnits(units, child.Digest)
		}
	}
	if m.Config.Digest.Validate() != nil {
		return units
	}
	units = c.add(units, "blob", m.Config.Digest.Encoded())
	for _, l := range m.Layers {
		if l.Digest.Validate() == nil {
			units = c.add(units, "blob", l.Digest.Encoded())
		}
	}
	if cd, err := c.s.ReadBlob(m.Config.Digest); err == nil {
		var cfg ocispec.Image
		if json.Unmarshal(cd, &cfg) == nil {
			for _, id := range cfg.RootFS.DiffIDs {
				if id.Validate() == nil {
					units = c.layerUnits(units, id.Encoded())
				}
			}
		}
	}
	return units
}

func (c *collector) sum(units []string) int64 {
	var n int64
	seen := map[string]bool{}
	for _, u := range units {
		if !seen[u] {
			seen[u] = true
			n += c.unitSize[u]
		}
	}
	return n
}

func fileMtime(p string) (time.Time, int64, bool) {
	info, err := os.Stat(p)
	if err != nil {
		return time.Time{}, 0, false
	}
	return info.ModTime(), info.Size(), true
}

// collect lists every entry of the store with what it reaches, and the units pinned regardless
// of entries (tags, and this process's lease).
func (s *Store) collect() (*collector, []*item, []string, error) {
	c := &collector{s: s, sizes: s.loadSnapshotSizes(), unitSize: map[string]int64{}, unitPaths: map[string]string{}}
	var items []*item
	var pinnedUnits []string

	// Tagged images: never evicted.
	tags, err := s.Tags()
	if err != nil {
		return nil, nil, nil, err
	}
	for _, name := range sortedNames(tags) {
		d := tags[name]
		it := &item{Entry: Entry{Kind: KindImage, Name: name, ID: d.String()}, pinned: true}
		it.path = filepath.Join(s.root, "tags", url.PathEscape(name))
		_, it.own, _ = fileMtime(it.path)
		it.units = c.imageUnits(nil, d)
		if data, err := s.ReadBlob(d); err == nil {
			var m ocispec.Manifest
			if json.Unmarshal(data, &m) == nil {
				if cd, err := s.ReadBlob(m.Config.Digest); err == nil {
					var cfg ocispec.Image
					if json.Unmarshal(cd, &cfg) == nil && cfg.Created != nil {
						it.Created = *cfg.Created
					}
				}
			}
		}
		items = append(items, it)
	}

	// Pulled base images.
	ents, _ := os.ReadDir(filepath.Join(s.root, "resolved"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		p := filepath.Join(s.root, "resolved", e.Name())
		mt, size, ok := fileMtime(p)
		if !ok {
			continue
		}
		name, _ := url.PathUnescape(e.Name())
		it := &item{Entry: Entry{Kind: KindBase, Name: name, LastUsed: mt}, path: p, own: size}
		it.pinned = s.used.has(leaseResolved, e.Name())
		if data, err := os.ReadFile(p); err == nil {
			if d, err := digest.Parse(strings.TrimSpace(string(data))); err == nil {
				it.ID = d.String()
				it.units = c.imageUnits(nil, d)
			}
		}
		items = append(items, it)
	}

	// Cache records.
	ents, _ = os.ReadDir(filepath.Join(s.root, "cache"))
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		p := filepath.Join(s.root, "cache", e.Name())
		mt, size, ok := fileMtime(p)
		if !ok {
			continue
		}
		key := strings.TrimSuffix(e.Name(), ".json")
		it := &item{Entry: Entry{Kind: KindRecord, ID: key, LastUsed: mt}, path: p, own: size}
		var r Record
		if readJSON(p, &r) == nil {
			it.Name, it.Created, it.Elapsed = r.Step, r.Created, r.Elapsed
			if !r.Empty && r.Layer.Validate() == nil {
				it.units = c.layerUnits(nil, r.Layer.Encoded())
			}
		}
		it.pinned = s.used.has(leaseRecord, key)
		items = append(items, it)
	}

	// Cache mounts.
	ents, _ = os.ReadDir(filepath.Join(s.root, "cachemounts"))
	for _, e := range ents {
		p := filepath.Join(s.root, "cachemounts", e.Name())
		mt, _, ok := fileMtime(p)
		if !ok {
			continue
		}
		it := &item{Entry: Entry{Kind: KindMount, Name: e.Name(), ID: e.Name(), LastUsed: mt}, path: p, own: treeSize(p)}
		it.pinned = s.used.has(leaseMount, e.Name())
		items = append(items, it)
	}

	// This process's lease: whatever the running build read or wrote.
	for _, d := range s.used.list(leaseImage) {
		pinnedUnits = c.imageUnits(pinnedUnits, digest.Digest(d))
	}
	for _, hex := range s.used.list(leaseLayer) {
		pinnedUnits = c.layerUnits(pinnedUnits, hex)
	}
	for _, hex := range s.used.list(leaseBlob) {
		pinnedUnits = c.add(pinnedUnits, "blob", hex)
	}
	for _, it := range items {
		it.Size = it.own + c.sum(it.units)
	}
	return c, items, pinnedUnits, nil
}

func sortedNames(m map[string]digest.Digest) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Inventory lists what the store keeps and why: tagged images first, then the evictable entries
// most recently used first.
func (s *Store) Inventory() ([]Entry, error) {
	_, items, _, err := s.collect()
	if err != nil {
		return nil, err
	}
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if (a.Kind == KindImage) != (b.Kind == KindImage) {
			return a.Kind == KindImage
		}
		return a.LastUsed.After(b.LastUsed)
	})
	out := make([]Entry, len(items))
	for i, it := range items {
		out[i] = it.Entry
	}
	return out, nil
}

// GCOptions select what GC evicts.
type GCOptions struct {
	// KeepStorage, when ≥ 0, evicts least recently used entries only until the store is at most
	// this many bytes; when < 0 every candidate is evicted.
	KeepStorage int64
	// Until, when > 0, makes only entries not used within this duration candidates.
	Until time.Duration
	// All makes pulled base images and cache mounts candidates too; without it only cache records
	// are.
	All bool
	// Now is the reference time for Until (default time.Now()).
	Now time.Time
}

// GCResult says what a GC did.
type GCResult struct {
	Before, After int64 // TotalUsage-equivalent bytes before and after
	Removed       map[string]int
	Freed         int64
}

// ErrNotExclusive is returned when GC is attempted without the exclusive lock.
var ErrNotExclusive = errors.New("store: GC needs the store opened exclusively")

// GC evicts entries as o says, then sweeps blobs, layers and snapshots nothing kept reaches.
// Tags, and everything this process used (its lease), are never removed. The store must be held
// exclusively (Open(root, true) or TryExclusive).
func (s *Store) GC(o GCOptions) (*GCResult, error) {
	if !s.exclusive {
		return nil, ErrNotExclusive
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	res := &GCResult{Removed: map[string]int{}}
	before, err := s.TotalUsage() // first: it caches new snapshot sizes for collect
	if err != nil {
		return nil, err
	}
	res.Before = before
	c, items, pinnedUnits, err := s.collect()
	if err != nil {
		return nil, err
	}

	// Reference counts over kept items; pinned units count once more, forever.
	refs := map[string]int{}
	for _, u := range pinnedUnits {
		refs[u]++
	}
	for _, it := range items {
		for _, u := range dedup(it.units) {
			refs[u]++
		}
	}
	// Projected size: what is on disk minus what the sweep will remove anyway.
	total := before
	for u, size := range c.unitSize {
		if refs[u] == 0 {
			total -= size
		}
	}
	total -= c.unreachableOnDisk(refs)

	var cands []*item
	for _, it := range items {
		if it.pinned || it.Kind == KindImage {
			continue
		}
		if !o.All && it.Kind != KindRecord {
			continue
		}
		if o.Until > 0 && !it.LastUsed.Before(o.Now.Add(-o.Until)) {
			continue
		}
		cands = append(cands, it)
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].LastUsed.Before(cands[j].LastUsed) })
	for _, it := range cands {
		if o.KeepStorage >= 0 && total <= o.KeepStorage {
			break
		}
		it.evict = true
		total -= it.own
		for _, u := range dedup(it.units) {
			refs[u]--
			if refs[u] == 0 {
				total -= c.unitSize[u]
			}
		}
	}

	// Remove evicted entries first (an entry never outlives what it points at), then sweep.
	for _, it := range items {
		if !it.evict {
			continue
		}
		var err error
		if it.Kind == KindMount {
			err = s.removeTree(it.path)
		} else {
			err = os.Remove(it.path)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("gc: remove %s: %w", it.path, err)
		}
		res.Removed[it.Kind]++
	}
	if err := s.sweep(refs); err != nil {
		return res, err
	}
	after, err := s.TotalUsage()
	if err != nil {
		return res, err
	}
	res.After = after
	res.Freed = before - after
	return res, nil
}

func dedup(units []string) []string {
	seen := map[string]bool{}
	out := units[:0:0]
	for _, u := range units {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// contentDirs are swept of whatever no kept entry reaches; dot-files are leftovers of an
// interrupted atomic write (safe to remove: no writer runs under the exclusive lock).
var contentDirs = []struct{ kind, dir, suffix string }{
	{"layer", "layers", ".json"},
	{"snap", "snapshots", ""},
	{"blob", "blobs/sha256", ""},
}

// unreachableOnDisk is the size of content files no unit names at all (orphans: blobs of
// untagged images, leftovers of failed builds).
func (c *collector) unreachableOnDisk(refs map[string]int) int64 {
	var n int64
	for _, cd := range contentDirs {
		ents, _ := os.ReadDir(filepath.Join(c.s.root, cd.dir))
		for _, e := range ents {
			hex := strings.TrimSuffix(e.Name(), cd.suffix)
			id := cd.kind + ":" + hex
			if _, known := c.unitSize[id]; known {
				continue
			}
			p := filepath.Join(c.s.root, cd.dir, e.Name())
			if cd.kind == "snap" && e.IsDir() {
				n += c.sizes.get(p, hex)
			} else {
				n += treeSize(p)
			}
		}
	}
	return n
}

// sweep removes content whose reference count is 0, in the order layer record, snapshot, blob,
// and leftover temp files in the index dirs.
func (s *Store) sweep(refs map[string]int) error {
	for _, cd := range contentDirs {
		ents, err := os.ReadDir(filepath.Join(s.root, cd.dir))
		if err != nil {
			return err
		}
		for _, e := range ents {
			hex := strings.TrimSuffix(e.Name(), cd.suffix)
			if refs[cd.kind+":"+hex] > 0 {
				continue
			}
			p := filepath.Join(s.root, cd.dir, e.Name())
			var err error
			if cd.kind == "snap" {
				err = s.removeTree(p)
			} else {
				err = os.RemoveAll(p)
			}
			if err != nil {
				return fmt.Errorf("gc: remove %s: %w", p, err)
			}
		}
	}
	s.sweepFileIndexes()
	for _, dir := range []string{"cache", "tags", "resolved", "records", "statcache", "selections", "history"} {
		ents, _ := os.ReadDir(filepath.Join(s.root, dir))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				os.Remove(filepath.Join(s.root, dir, e.Name()))
			}
		}
	}
	s.sweepMembers(refs)
	return nil
}

// removeTree removes a directory so that no half-deleted copy is ever visible under its name: it
// is first renamed into this process's scratch dir (which a later Open cleans up if we die).
func (s *Store) removeTree(p string) error {
	dst, err := os.MkdirTemp(s.tmpDir, "gc-")
	if err != nil {
		return err
	}
	target := filepath.Join(dst, "x")
	if err := os.Rename(p, target); err != nil {
		os.Remove(dst)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(dst)
}

// PruneOptions select what prune removes (`strata prune`, buildx semantics).
type PruneOptions struct {
	All         bool          // also pulled base images, cache mounts and stat caches
	KeepStorage int64         // ≥ 0: keep the most recently used entries up to this size
	Until       time.Duration // > 0: only entries not used within this duration
}

// Prune removes build cache as o says and then every blob, layer and snapshot nothing kept
// reaches. Without KeepStorage or Until it removes all of it, and the step history used for miss
// reasons too. It needs the store opened exclusively, so no build is running.
func (s *Store) Prune(o PruneOptions) (*GCResult, error) {
	if !s.exclusive {
		return nil, ErrNotExclusive
	}
	full := o.KeepStorage < 0 && o.Until <= 0
	if full {
		dirs := []string{"records", "selections"}
		if o.All {
			dirs = append(dirs, "statcache")
		}
		for _, dir := range dirs {
			ents, _ := os.ReadDir(filepath.Join(s.root, dir))
			for _, e := range ents {
				os.RemoveAll(filepath.Join(s.root, dir, e.Name()))
			}
		}
	}
	return s.GC(GCOptions{KeepStorage: o.KeepStorage, Until: o.Until, All: o.All})
}

// AutoGC is the GC after a build: when the store is over limit, evict least recently used
// entries of every kind (records, pulled base images, cache mounts) until it is not, never
// touching tags or what this process used. It returns nil, nil when under the limit.
func (s *Store) AutoGC(limit int64) (*GCResult, error) {
	total, err := s.TotalUsage()
	if err != nil {
		return nil, err
	}
	if total <= limit {
		return nil, nil
	}
	return s.GC(GCOptions{KeepStorage: limit, All: true})
}
