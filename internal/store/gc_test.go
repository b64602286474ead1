package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// fixture builds store content through the public API with real files.
type fixture struct {
	t    *testing.T
	root string
}

func newFixture(t *testing.T) *fixture {
	return &fixture{t: t, root: t.TempDir()}
}

// open opens the store; content created through a Store is leased by it, so tests create content
// with one Store and collect with another.
func (f *fixture) open(exclusive bool) *Store {
	f.t.Helper()
	s, err := Open(f.root, exclusive)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func randKey(t *testing.T) string {
	return hex.EncodeToString(randBytes(t, 32))
}

// layer makes a blob of size bytes, its layer JSON and a snapshot dir holding a file of the same
// size, an overlay whiteout (char device 0/0) and a trusted.* xattr.
func (f *fixture) layer(s *Store, size int) Layer {
	f.t.Helper()
	data := randBytes(f.t, size)
	blob, err := s.WriteBlob(data)
	if err != nil {
		f.t.Fatal(err)
	}
	h := sha256.Sum256(append([]byte("diff"), data...))
	diffID := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h[:]))
	l := Layer{DiffID: diffID, Digest: blob, MediaType: ocispec.MediaTypeImageLayerGzip, Size: int64(size), ContentID: diffID}
	if err := s.PutLayer(l); err != nil {
		f.t.Fatal(err)
	}
	dir, err := s.TempDir("snap-")
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "d"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "file"), data, 0o644); err != nil {
		f.t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(dir, "gone"), unix.S_IFCHR, 0); err != nil {
			f.t.Fatal(err)
		}
		// tmpfs may refuse trusted.* xattrs; the whiteout is what matters.
		unix.Setxattr(filepath.Join(dir, "d"), "trusted.overlay.opaque", []byte("y"), 0)
	}
	if err := s.CommitSnapshot(dir, diffID); err != nil {
		f.t.Fatal(err)
	}
	return l
}

// record makes a cache record for a new layer of size bytes, last used at lastUsed.
func (f *fixture) record(s *Store, size int, lastUsed time.Time) (*Record, Layer) {
	f.t.Helper()
	l := f.layer(s, size)
	r := &Record{Key: randKey(f.t), Step: "test COPY", Layer: l.DiffID, Size: l.Size, Created: lastUsed, Elapsed: time.Second}
	if err := s.PutRecord(r); err != nil {
		f.t.Fatal(err)
	}
	f.touch(s.recordPath(r.Key), lastUsed)
	return r, l
}

func (f *fixture) touch(p string, t time.Time) {
	f.t.Helper()
	if err := os.Chtimes(p, t, t); err != nil {
		f.t.Fatal(err)
	}
}

// image writes a manifest and config over layers and returns the manifest digest.
func (f *fixture) image(s *Store, layers ...Layer) digest.Digest {
	f.t.Helper()
	cfg := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers"}}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest}
	m.SchemaVersion = 2
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	cd, _ := json.Marshal(cfg)
	cdg, err := s.WriteBlob(cd)
	if err != nil {
		f.t.Fatal(err)
	}
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cdg, Size: int64(len(cd))}
	md, _ := json.Marshal(m)
	d, err := s.WriteBlob(md)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// layerPresent reports whether the layer JSON, its blob and its snapshot are all there.
func layerPresent(s *Store, l Layer) (json, blob, snap bool) {
	_, err := os.Stat(s.layerPath(l.DiffID))
	return err == nil, s.Has(l.Digest), s.HasSnapshot(l.DiffID)
}

func assertLayer(t *testing.T, s *Store, l Layer, want bool, what string) {
	t.Helper()
	j, b, sn := layerPresent(s, l)
	if j != want || b != want || sn != want {
		t.Errorf("%s: layer json=%v blob=%v snapshot=%v, want all %v", what, j, b, sn, want)
	}
}

func total(t *testing.T, s *Store) int64 {
	t.Helper()
	n, err := s.TotalUsage()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGCKeepStorageEvictsLeastRecentlyUsed(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	now := time.Now()
	base := f.layer(w, 50_000)
	if err := w.Tag("docker.io/library/base:1", f.image(w, base)); err != nil {
		t.Fatal(err)
	}
	var recs []*Record
	var layers []Layer
	for i := 0; i < 5; i++ { // i=0 is the oldest
		r, l := f.record(w, 100_000, now.Add(time.Duration(i-10)*time.Hour))
		recs, layers = append(recs, r), append(layers, l)
	}
	w.Close()

	s := f.open(true)
	before := total(t, s)
	// Room for everything but about two and a half layers (blob + snapshot ≈ 200 KB each).
	keep := before - 500_000
	res, err := s.GC(GCOptions{KeepStorage: keep})
	if err != nil {
		t.Fatal(err)
	}
	after := total(t, s)
	if after > keep {
		t.Errorf("after GC %d bytes, limit %d", after, keep)
	}
	if res.After != after || res.Before != before || res.Freed != before-after {
		t.Errorf("result %+v, measured before %d after %d", res, before, after)
	}
	if res.Removed[KindRecord] != 3 {
		t.Errorf("removed %v, want the 3 oldest records", res.Removed)
	}
	for i, r := range recs {
		_, err := s.GetRecord(r.Key)
		kept := i >= 3
		if (err == nil) != kept {
			t.Errorf("record %d (age rank %d): present=%v, want %v", i, i, err == nil, kept)
		}
		assertLayer(t, s, layers[i], kept, "record layer")
	}
	assertLayer(t, s, base, true, "tagged image layer")
	if _, err := s.Lookup("docker.io/library/base:1"); err != nil {
		t.Errorf("tag lost: %v", err)
	}
	// Nothing half-deleted is left in scratch either.
	ents, _ := os.ReadDir(s.tmpDir)
	for _, e := range ents {
		if e.Name() != ".lock" {
			t.Errorf("GC left %s in scratch", e.Name())
		}
	}
}

func TestGCUntilRemovesOnlyOldCache(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	now := time.Now()
	old, oldL := f.record(w, 10_000, now.Add(-48*time.Hour))
	recent, recentL := f.record(w, 10_000, now.Add(-time.Hour))
	w.Close()

	s := f.open(true)
	res, err := s.Prune(PruneOptions{KeepStorage: -1, Until: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed[KindRecord] != 1 {
		t.Errorf("removed %v, want 1 record", res.Removed)
	}
	if _, err := s.GetRecord(old.Key); err == nil {
		t.Error("record unused for 48h survived until=24h")
	}
	if _, err := s.GetRecord(recent.Key); err != nil {
		t.Errorf("record used 1h ago removed by until=24h: %v", err)
	}
	assertLayer(t, s, oldL, false, "old layer")
	assertLayer(t, s, recentL, true, "recent layer")
}

func TestGCUntilAndKeepStorageTogether(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	now := time.Now()
	var recs []*Record
	for _, age := range []time.Duration{72, 48, 36, 1} { // hours, oldest first
		r, _ := f.record(w, 100_000, now.Add(-age*time.Hour))
		recs = append(recs, r)
	}
	w.Close()
	s := f.open(true)
	// Only the three older than 24h are candidates; keep-storage stops after the oldest one.
	keep := total(t, s) - 150_000
	res, err := s.Prune(PruneOptions{KeepStorage: keep, Until: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed[KindRecord] != 1 {
		t.Fatalf("removed %v, want only the oldest record", res.Removed)
	}
	if _, err := s.GetRecord(recs[0].Key); err == nil {
		t.Error("oldest record kept")
	}
	// Keep-storage 0 with until: still never removes recent cache.
	if _, err := s.Prune(PruneOptions{KeepStorage: 0, Until: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRecord(recs[3].Key); err != nil {
		t.Error("recent record removed despite until=24h")
	}
	if _, err := s.GetRecord(recs[2].Key); err == nil {
		t.Error("old record kept by keep-storage 0")
	}
}

func TestGCSharedLayerStaysWhileAnyRecordUsesIt(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	now := time.Now()
	r1, l := f.record(w, 20_000, now.Add(-2*time.Hour))
	r2 := &Record{Key: randKey(t), Step: "same layer", Layer: l.DiffID, Created: now}
	if err := w.PutRecord(r2); err != nil {
		t.Fatal(err)
	}
	w.Close()
	s := f.open(true)
	// Evict exactly one record: a limit just under the total.
	if _, err := s.GC(GCOptions{KeepStorage: total(t, s) - 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRecord(r1.Key); err == nil {
		t.Error("older record kept")
	}
	if _, err := s.GetRecord(r2.Key); err != nil {
		t.Errorf("newer record: %v", err)
	}
	assertLayer(t, s, l, true, "layer shared with a kept record")
}

func TestPruneKeepsTaggedImagesAndPulledBases(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	tagged := f.layer(w, 30_000)
	img := f.image(w, tagged)
	if err := w.Tag("docker.io/library/app:1", img); err != nil {
		t.Fatal(err)
	}
	pulled := f.layer(w, 30_000)
	pulledImg := f.image(w, pulled)
	if err := w.SetResolved("docker.io/library/busybox:latest", pulledImg); err != nil {
		t.Fatal(err)
	}
	_, recL := f.record(w, 30_000, time.Now())
	orphan, err := w.WriteBlob(randBytes(t, 1000))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetLast("pos", map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	mount, err := w.CacheMountDir("gocache")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(mount, "x"), []byte("cached"), 0o644)
	os.WriteFile(filepath.Join(w.root, "cache", ".tmp-leftover"), []byte("x"), 0o644)
	w.Close()

	s := f.open(true)
	res, err := s.Prune(PruneOptions{KeepStorage: -1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed[KindRecord] != 1 || res.Removed[KindBase] != 0 || res.Removed[KindMount] != 0 {
		t.Errorf("prune removed %v, want 1 record only", res.Removed)
	}
	assertLayer(t, s, tagged, true, "tagged image layer")
	assertLayer(t, s, pulled, true, "pulled base layer (without --all)")
	assertLayer(t, s, recL, false, "record layer")
	if s.Has(orphan) {
		t.Error("unreferenced blob survived prune")
	}
	if _, err := s.Last("pos"); err == nil {
		t.Error("step history survived a full prune")
	}
	if _, err := os.Stat(filepath.Join(s.root, "cache", ".tmp-leftover")); err == nil {
		t.Error("temp leftover survived prune")
	}
	if _, err := os.Stat(mount); err != nil {
		t.Error("cache mount removed without --all")
	}

	res, err = s.Prune(PruneOptions{KeepStorage: -1, All: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed[KindBase] != 1 || res.Removed[KindMount] != 1 {
		t.Errorf("prune --all removed %v, want the base and the mount", res.Removed)
	}
	assertLayer(t, s, pulled, false, "pulled base layer (--all)")
	assertLayer(t, s, tagged, true, "tagged image layer (--all)")
	if !s.Has(img) {
		t.Error("tagged manifest removed")
	}
	if _, err := os.Stat(mount); err == nil {
		t.Error("cache mount survived prune --all")
	}
}

func TestGCNeverRemovesWhatThisProcessUsed(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	now := time.Now()
	used, usedL := f.record(w, 50_000, now.Add(-100*time.Hour)) // oldest, but used below
	other, otherL := f.record(w, 50_000, now.Add(-time.Hour))
	pulled := f.layer(w, 20_000)
	pulledImg := f.image(w, pulled)
	w.SetResolved("docker.io/library/busybox:latest", pulledImg)
	f.touch(filepath.Join(w.root, "resolved", "docker.io%2Flibrary%2Fbusybox:latest"), now.Add(-200*time.Hour))
	w.Close()

	// A "build": shared lock, uses one record and the base, writes a new blob.
	b := f.open(false)
	if _, err := b.GetRecord(used.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resolved("docker.io/library/busybox:latest"); err != nil {
		t.Fatal(err)
	}
	fresh, err := b.WriteBlob([]byte("manifest of the result"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.GC(GCOptions{KeepStorage: 0, All: true}); !errors.Is(err, ErrNotExclusive) {
		t.Fatalf("GC under a shared lock: %v, want ErrNotExclusive", err)
	}
	if !b.TryExclusive() {
		t.Fatal("TryExclusive failed with no other holder")
	}
	if _, err := b.AutoGC(0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetRecord(used.Key); err != nil {
		t.Errorf("record the build used was removed: %v", err)
	}
	assertLayer(t, b, usedL, true, "layer the build used")
	assertLayer(t, b, pulled, true, "base the build used")
	if !b.Has(fresh) {
		t.Error("blob the build wrote was removed")
	}
	if _, err := b.GetRecord(other.Key); err == nil {
		t.Error("unused record survived GC with limit 0")
	}
	assertLayer(t, b, otherL, false, "unused layer")
}

func TestLocking(t *testing.T) {
	f := newFixture(t)
	a := f.open(false)
	b := f.open(false)
	if _, err := OpenNoWait(f.root, true); !errors.Is(err, ErrBusy) {
		t.Fatalf("exclusive open beside builds: %v, want ErrBusy", err)
	}
	if a.TryExclusive() {
		t.Fatal("TryExclusive succeeded while another process holds the store")
	}
	b.Close()
	a.Close()
	x, err := OpenNoWait(f.root, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenNoWait(f.root, false); !errors.Is(err, ErrBusy) {
		t.Fatalf("build open beside prune: %v, want ErrBusy", err)
	}
	// A blocking open waits for the prune.
	done := make(chan struct{})
	go func() {
		s, err := Open(f.root, false)
		if err == nil {
			s.Close()
		}
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("shared open did not wait for the exclusive holder")
	case <-time.After(200 * time.Millisecond):
	}
	x.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("shared open still blocked after the exclusive holder closed")
	}
}

func TestAutoGCUnderLimitDoesNothing(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	r, _ := f.record(w, 10_000, time.Now().Add(-time.Hour))
	w.Close()
	s := f.open(true)
	res, err := s.AutoGC(total(t, s))
	if err != nil || res != nil {
		t.Fatalf("AutoGC at the limit: %v %v", res, err)
	}
	if _, err := s.GetRecord(r.Key); err != nil {
		t.Error(err)
	}
}

func TestRecordsAndInventory(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	now := time.Now()
	r, l := f.record(w, 10_000, now.Add(-time.Hour))
	// A record written before records carried a size.
	legacy := &Record{Key: randKey(t), Step: "legacy", Layer: l.DiffID, Created: now}
	w.PutRecord(legacy)
	w.Tag("docker.io/library/app:1", f.image(w, l))
	w.Close()
	s := f.open(false)
	recs, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Key != legacy.Key || recs[0].Size != 10_000 || recs[1].Size != 10_000 {
		t.Fatalf("records %+v", recs)
	}
	if d := recs[1].LastUsed.Sub(now.Add(-time.Hour)); d > time.Second || d < -time.Second {
		t.Errorf("last used %v", recs[1].LastUsed)
	}
	if recs[1].Elapsed != time.Second || recs[1].Created.IsZero() {
		t.Errorf("record lost created/elapsed: %+v", recs[1])
	}
	inv, err := s.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if len(inv) != 3 || inv[0].Kind != KindImage || inv[1].ID != legacy.Key || inv[2].ID != r.Key {
		t.Fatalf("inventory %+v", inv)
	}
	if inv[2].Size < 20_000 { // blob + snapshot
		t.Errorf("record size %d, want blob + snapshot", inv[2].Size)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1024": 1024, "10GB": 10 << 30, "512MB": 512 << 20, "1.5g": 3 << 29, "2m": 2 << 20,
		"100KiB": 100 << 10, "7b": 7, "1 GB": 1 << 30, "2MB": 2 << 20,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "GB", "-1GB", "10XB", "1.2.3m"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

func TestDefaultLimit(t *testing.T) {
	l := DefaultLimit(filepath.Join(t.TempDir(), "not", "yet"))
	if l <= 0 || l > MaxDefaultLimit {
		t.Fatalf("default limit %d", l)
	}
}

// Selection memos count in `strata du` and in the total GC compares with its limit.
func TestUsageCountsSelectionMemos(t *testing.T) {
	f := newFixture(t)
	s := f.open(false)
	before := total(t, s)
	m := SelectionMemo{KeyDigest: digest.FromString("k").String(), Digest: digest.FromString("d"), Files: 1, Summary: map[string]string{"a": strings.Repeat("x", 5000)}}
	if err := s.PutSelection(strings.Repeat("a", 64), m); err != nil {
		t.Fatal(err)
	}
	u, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range u {
		if e.Kind == "selection memos" {
			found = e.Count == 1 && e.Size > 5000
		}
	}
	if !found || total(t, s) < before+5000 {
		t.Errorf("usage %+v: want one selection memo of more than 5000 bytes counted", u)
	}
}

// A kill inside Open, between making its scratch dir and renaming it into place, leaves a young
// ".new-" dir. A build's shared Open must leave such a dir alone (it may be another Open's, mid
// setup); an exclusive Open (verify, prune, GC) knows no Open can be running and removes it.
func TestExclusiveOpenSweepsHalfMadeScratch(t *testing.T) {
	f := newFixture(t)
	f.open(false).Close()
	half := filepath.Join(f.root, "tmp", newScratchPrefix+"p1-123")
	if err := os.Mkdir(half, 0o700); err != nil {
		t.Fatal(err)
	}
	s := f.open(false)
	if _, err := os.Stat(half); err != nil {
		t.Fatalf("a shared open removed a scratch dir that may be mid setup: %v", err)
	}
	s.Close()
	x := f.open(true)
	defer x.Close()
	if _, err := os.Stat(half); !os.IsNotExist(err) {
		t.Fatalf("an exclusive open left the half-made scratch dir: %v", err)
	}
}

// Tagging an image with the name it already has writes nothing (a no-change rebuild leaves the
// store untouched); a new image under the name replaces the tag.
func TestTagUnchangedWritesNothing(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	img1, img2 := f.image(w, f.layer(w, 1000)), f.image(w, f.layer(w, 1000))
	if err := w.Tag("docker.io/library/app:1", img1); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(w.root, "tags", "docker.io%2Flibrary%2Fapp:1")
	before, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Tag("docker.io/library/app:1", img1); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(p); err != nil || !os.SameFile(before, after) {
		t.Errorf("same tag rewritten (err %v)", err)
	}
	if err := w.Tag("docker.io/library/app:1", img2); err != nil {
		t.Fatal(err)
	}
	if got, err := w.Lookup("docker.io/library/app:1"); err != nil || got != img2 {
		t.Errorf("retag: %s, %v; want %s", got, err, img2)
	}
}
