package store

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// verifyStore is a store with a bit of everything, all consistent: a tagged image over a pulled
// layer, a lazy layer known only by its registry, two cache records (one empty) and a remembered
// base image.
type verifyStore struct {
	f              *fixture
	rec, other     *Record
	recL, otherL   Layer
	base, lazy     Layer
	tag            string
	manifest, lazM digest.Digest
}

func newVerifyStore(t *testing.T) *verifyStore {
	f := newFixture(t)
	w := f.open(false)
	vs := &verifyStore{f: f, tag: "docker.io/library/app:1"}
	now := time.Now()
	vs.rec, vs.recL = f.record(w, 20_000, now)
	vs.other, vs.otherL = f.record(w, 20_000, now)
	empty := &Record{Key: randKey(t), Step: "test ENV", Empty: true, Created: now}
	if err := w.PutRecord(empty); err != nil {
		t.Fatal(err)
	}
	vs.base = f.layer(w, 10_000)
	vs.manifest = f.image(w, vs.base, vs.recL)
	if err := w.Tag(vs.tag, vs.manifest); err != nil {
		t.Fatal(err)
	}
	// A lazily pulled base: manifest and config here, the layer only in a registry.
	data := randBytes(t, 1000)
	vs.lazy = Layer{DiffID: digest.FromBytes(append([]byte("diff"), data...)), Digest: digest.FromBytes(data), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Size: 1000, Remote: "registry.example/lazy"}
	vs.lazy.ContentID = vs.lazy.DiffID
	if err := w.PutLayer(vs.lazy); err != nil {
		t.Fatal(err)
	}
	vs.lazM = f.image(w, vs.lazy)
	if err := w.SetResolved("registry.example/lazy:1", vs.lazM); err != nil {
		t.Fatal(err)
	}
	if err := w.SetLast("position", map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return vs
}

func (vs *verifyStore) path(parts ...string) string {
	return filepath.Join(append([]string{vs.f.root}, parts...)...)
}

func runVerify(t *testing.T, s *Store, repair bool) *VerifyResult {
	t.Helper()
	res, err := s.Verify(repair)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// problemPaths lists the paths problems name, sorted.
func problemPaths(res *VerifyResult) []string {
	var ps []string
	for _, p := range res.Problems {
		ps = append(ps, p.Path)
	}
	sort.Strings(ps)
	return ps
}

func wantProblems(t *testing.T, res *VerifyResult, want ...string) {
	t.Helper()
	sort.Strings(want)
	got := problemPaths(res)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		var lines []string
		for _, p := range res.Problems {
			lines = append(lines, p.String())
		}
		t.Errorf("problems:\n  %s\nwant paths:\n  %s", strings.Join(lines, "\n  "), strings.Join(want, "\n  "))
	}
}

// listing is every file and directory under the root except scratch and the lock, with size and
// mtime, to prove repair touched nothing else.
func listing(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "tmp" || rel == "lock" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[rel] = info.Mode().String() // removing an entry changes its directory's mtime
		} else {
			out[rel] = fmt.Sprint(info.Mode(), info.ModTime(), info.Size())
		}
		return nil
	})
	return out
}

// assertRepairs runs verify --repair (expecting exactly want), then verify again
// (expecting nothing), and checks that everything outside want is still there, unchanged.
func assertRepairs(t *testing.T, vs *verifyStore, want ...string) *Store {
	t.Helper()
	s := vs.f.open(true)
	before := listing(t, vs.f.root)
	res := runVerify(t, s, false)
	wantProblems(t, res, want...)
	if !strings.HasSuffix(res.Summary(), "problems") && !strings.HasSuffix(res.Summary(), "problem") {
		t.Errorf("summary %q", res.Summary())
	}
	if after := listing(t, vs.f.root); len(after) != len(before) {
		t.Errorf("verify without --repair changed the store: %d entries, were %d", len(after), len(before))
	}
	res = runVerify(t, s, true)
	wantProblems(t, res, want...)
	if res.Unrepaired() != 0 {
		t.Errorf("unrepaired after --repair: %v", res.Problems)
	}
	res = runVerify(t, s, false)
	if len(res.Problems) != 0 || !strings.HasSuffix(res.Summary(), ": ok") {
		t.Errorf("after repair: %s %v", res.Summary(), res.Problems)
	}
	after := listing(t, vs.f.root)
	for rel, v := range before {
		gone := false
		for _, w := range want {
			if rel == w || strings.HasPrefix(rel, w+"/") {
				gone = true
			}
		}
		if gone {
			if _, ok := after[rel]; ok {
				t.Errorf("%s still there after repair", rel)
			}
			continue
		}
		if after[rel] != v {
			t.Errorf("repair touched %s: %q → %q", rel, v, after[rel])
		}
	}
	return s
}

func TestVerifyConsistentStore(t *testing.T) {
	vs := newVerifyStore(t)
	s := vs.f.open(true)
	before := listing(t, vs.f.root)
	res := runVerify(t, s, true)
	if len(res.Problems) != 0 {
		t.Errorf("problems in a consistent store: %v", res.Problems)
	}
	// 3 layer blobs (2 records + base), 2 images × (manifest + config).
	if res.Blobs != 7 || res.Records != 3 || res.Snapshots != 3 {
		t.Errorf("counted %d blobs, %d records, %d snapshots; want 7, 3, 3", res.Blobs, res.Records, res.Snapshots)
	}
	if got, want := res.Summary(), "store verify: 7 blobs, 3 records, 3 snapshots: ok"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
	after := listing(t, vs.f.root)
	for rel, v := range before {
		if after[rel] != v {
			t.Errorf("verify --repair of a consistent store touched %s", rel)
		}
	}
}

func TestVerifyNeedsExclusiveStore(t *testing.T) {
	vs := newVerifyStore(t)
	s := vs.f.open(false)
	if _, err := s.Verify(false); err == nil {
		t.Error("Verify under a shared lock succeeded")
	}
}

func TestVerifyBlobWithWrongContent(t *testing.T) {
	vs := newVerifyStore(t)
	// Bit rot in the record's layer blob: the blob goes, then the layer record naming it (no
	// registry to fetch it from), its snapshot and the cache record, and the tag of the image
	// that used the layer. The other record and the lazy base are fine and stay.
	blob := filepath.Join("blobs", "sha256", vs.recL.Digest.Encoded())
	data, err := os.ReadFile(vs.path(blob))
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(vs.path(blob), data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := assertRepairs(t, vs,
		blob,
		filepath.Join("layers", vs.recL.DiffID.Encoded()+".json"),
		filepath.Join("snapshots", vs.recL.DiffID.Encoded()),
		filepath.Join("cache", vs.rec.Key+".json"),
		filepath.Join("tags", url.PathEscape(vs.tag)),
	)
	if _, err := s.GetRecord(vs.other.Key); err != nil {
		t.Errorf("the intact record is gone: %v", err)
	}
	if _, err := s.Resolved("registry.example/lazy:1"); err != nil {
		t.Errorf("the lazy base is gone: %v", err)
	}
}

func TestVerifyCorruptBlobOfLazyLayerKeepsTheLayer(t *testing.T) {
	vs := newVerifyStore(t)
	// The lazy layer's blob arrives damaged (written behind the store's back): removing it makes
	// the layer lazy again, which is consistent.
	blob := filepath.Join("blobs", "sha256", vs.lazy.Digest.Encoded())
	if err := os.WriteFile(vs.path(blob), []byte("not the layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	assertRepairs(t, vs, blob)
}

func TestVerifyRecordWhoseLayerIsGone(t *testing.T) {
	vs := newVerifyStore(t)
	// A layer record lost (e.g. a disk error): the cache record and the snapshot of that layer
	// go with it.
	if err := os.Remove(vs.path("layers", vs.otherL.DiffID.Encoded()+".json")); err != nil {
		t.Fatal(err)
	}
	assertRepairs(t, vs,
		filepath.Join("cache", vs.other.Key+".json"),
		filepath.Join("snapshots", vs.otherL.DiffID.Encoded()),
	)
}

func TestVerifyLayerRecordWithoutBlob(t *testing.T) {
	vs := newVerifyStore(t)
	if err := os.Remove(vs.path("blobs", "sha256", vs.otherL.Digest.Encoded())); err != nil {
		t.Fatal(err)
	}
	assertRepairs(t, vs,
		filepath.Join("layers", vs.otherL.DiffID.Encoded()+".json"),
		filepath.Join("cache", vs.other.Key+".json"),
		filepath.Join("snapshots", vs.otherL.DiffID.Encoded()),
	)
}

func TestVerifyDamagedIndexFiles(t *testing.T) {
	vs := newVerifyStore(t)
	for _, p := range []string{filepath.Join("cache", vs.other.Key+".json"), filepath.Join("records", hashName("position")+".json")} {
		if err := os.WriteFile(vs.path(p), []byte(`{"key": "tru`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A tag whose content is garbage and a remembered base whose manifest is gone.
	if err := os.WriteFile(vs.path("tags", url.PathEscape("docker.io/library/junk:1")), []byte("sha256:nothex"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vs.path("resolved", url.PathEscape("registry.example/gone:1")), []byte(digest.FromString("gone")), 0o600); err != nil {
		t.Fatal(err)
	}
	assertRepairs(t, vs,
		filepath.Join("cache", vs.other.Key+".json"),
		filepath.Join("records", hashName("position")+".json"),
		filepath.Join("tags", url.PathEscape("docker.io/library/junk:1")),
		filepath.Join("resolved", url.PathEscape("registry.example/gone:1")),
		// The other record's layer is fine, so nothing else goes.
	)
}

func TestVerifyOrphanSnapshotAndJunk(t *testing.T) {
	vs := newVerifyStore(t)
	orphan := randKey(t)
	if err := os.MkdirAll(vs.path("snapshots", orphan, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vs.path("blobs", "sha256", "partial-download"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	assertRepairs(t, vs,
		filepath.Join("snapshots", orphan),
		filepath.Join("blobs", "sha256", "partial-download"),
	)
}

func TestVerifyStrayScratchTempFilesAndMounts(t *testing.T) {
	vs := newVerifyStore(t)
	// What a killed build leaves that Open could not clear: a scratch dir (with, when we can make
	// one, a mount inside, as a build outside a private mount namespace would), and the temp file
	// of an interrupted atomic write.
	stray := vs.path("tmp", "p999999-1234")
	if err := os.MkdirAll(filepath.Join(stray, "merged"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vs.path("cache", ".tmp-"+vs.rec.Key+".json-123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A build history record interrupted mid-write.
	if err := os.MkdirAll(vs.path("history"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vs.path("history", ".tmp-1-abc"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := vs.f.open(true) // Open sweeps the scratch dir; put it back as if that had failed
	if err := os.MkdirAll(filepath.Join(stray, "merged"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join("tmp", "p999999-1234"), filepath.Join("cache", ".tmp-"+vs.rec.Key+".json-123"), filepath.Join("history", ".tmp-1-abc")}
	mounted := os.Geteuid() == 0 && unix.Mount("tmpfs", filepath.Join(stray, "merged"), "tmpfs", 0, "") == nil
	if mounted {
		t.Cleanup(func() { unix.Unmount(filepath.Join(stray, "merged"), unix.MNT_DETACH) })
		want = append(want, filepath.Join("tmp", "p999999-1234", "merged"))
	}
	res := runVerify(t, s, false)
	wantProblems(t, res, want...)
	res = runVerify(t, s, true)
	wantProblems(t, res, want...)
	if res.Unrepaired() != 0 {
		t.Errorf("unrepaired: %v", res.Problems)
	}
	if res = runVerify(t, s, false); len(res.Problems) != 0 {
		t.Errorf("after repair: %v", res.Problems)
	}
	if _, err := os.Stat(stray); err == nil {
		t.Error("stray scratch still there")
	}
	// Our own scratch dir is not stray.
	if _, err := os.Stat(s.tmpDir); err != nil {
		t.Errorf("verify removed its own scratch dir: %v", err)
	}
}

// A lazy layer whose blob its registry deleted is forgotten with the records naming it, and the
// store stays consistent; a lazy base layer no record names is kept (an image names it).
func TestForgetLayer(t *testing.T) {
	vs := newVerifyStore(t)
	w := vs.f.open(false)
	if n, err := w.ForgetLayer(vs.lazy.DiffID); err != nil || n != 0 {
		t.Fatalf("ForgetLayer(base layer) = %d, %v; want it kept", n, err)
	}
	if _, err := w.GetLayer(vs.lazy.DiffID); err != nil {
		t.Fatalf("the base layer is gone: %v", err)
	}
	data := randBytes(t, 500)
	l := Layer{DiffID: digest.FromBytes(append([]byte("diff"), data...)), Digest: digest.FromBytes(data), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Size: 500, Remote: "registry.example/cache"}
	l.ContentID = l.DiffID
	if err := w.PutLayer(l); err != nil {
		t.Fatal(err)
	}
	r := &Record{Key: randKey(t), Step: "test RUN", Layer: l.DiffID, Size: 500, Created: time.Now()}
	if err := w.PutRecord(r); err != nil {
		t.Fatal(err)
	}
	if _, err := w.GetRecord(r.Key); err != nil {
		t.Fatalf("the lazy record is not usable before: %v", err)
	}
	if n, err := w.ForgetLayer(l.DiffID); err != nil || n != 1 {
		t.Fatalf("ForgetLayer = %d, %v; want 1 record removed", n, err)
	}
	if _, err := w.GetRecord(r.Key); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the record still answers: %v", err)
	}
	if _, err := w.GetLayer(l.DiffID); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the layer is still known: %v", err)
	}
	// A layer whose blob is here is never forgotten.
	if n, err := w.ForgetLayer(vs.recL.DiffID); err != nil || n != 0 {
		t.Errorf("ForgetLayer(local layer) = %d, %v", n, err)
	}
	w.Close()
	x := vs.f.open(true)
	defer x.Close()
	wantProblems(t, runVerify(t, x, false))
}
