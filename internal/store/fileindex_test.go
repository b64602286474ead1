package store

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/fileindex"
)

// indexFor writes the file index a COPY would have left for the fixture layer's snapshot
// (d/file, see fixture.layer) and returns its path relative to the root.
func indexFor(t *testing.T, s *Store, l Layer) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.SnapshotPath(l.DiffID), "d", "file"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutFileIndex(l.DiffID, fileindex.Index{"d/file": sha256.Sum256(data)}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join("snapfiles", l.DiffID.Encoded())
}

func TestFileIndexAndLastLayer(t *testing.T) {
	f := newFixture(t)
	s := f.open(false)
	l := f.layer(s, 1000)
	if _, err := s.FileIndex(l.DiffID); !os.IsNotExist(err) {
		t.Fatalf("index before one was written: %v", err)
	}
	indexFor(t, s, l)
	idx, err := s.FileIndex(l.DiffID)
	if err != nil || len(idx) != 1 {
		t.Fatalf("index %v, %v", idx, err)
	}
	// A damaged index is an error, never a wrong digest.
	p := s.fileIndexPath(l.DiffID)
	data, _ := os.ReadFile(p)
	os.WriteFile(p, data[:len(data)-1], 0o600)
	if _, err := s.FileIndex(l.DiffID); err == nil {
		t.Error("a cut index decoded")
	}

	if _, err := s.LastLayer("pos"); err == nil {
		t.Error("a last layer before any was set")
	}
	if err := s.SetLastLayer("pos", l.DiffID); err != nil {
		t.Fatal(err)
	}
	if d, err := s.LastLayer("pos"); err != nil || d != l.DiffID {
		t.Errorf("last layer %s, %v", d, err)
	}
	// Unchanged: not written again.
	old := time.Now().Add(-time.Hour)
	f.touch(s.lastLayerPath("pos"), old)
	s.SetLastLayer("pos", l.DiffID)
	if fi, _ := os.Stat(s.lastLayerPath("pos")); !fi.ModTime().Equal(old) {
		t.Error("an unchanged last layer was rewritten")
	}
}

// A file index goes with its snapshot when GC sweeps it; one without a snapshot goes too.
func TestGCSweepsFileIndexes(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	now := time.Now()
	oldRec, oldL := f.record(w, 10_000, now.Add(-2*time.Hour))
	_, newL := f.record(w, 10_000, now.Add(-time.Hour))
	oldIdx, newIdx := indexFor(t, w, oldL), indexFor(t, w, newL)
	stray := filepath.Join("snapfiles", randKey(t))
	if err := os.WriteFile(filepath.Join(f.root, stray), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.Close()
	s := f.open(true)
	if _, err := s.GC(GCOptions{Until: 90 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRecord(oldRec.Key); err == nil {
		t.Fatal("the old record survived")
	}
	for rel, want := range map[string]bool{oldIdx: false, stray: false, newIdx: true} {
		if _, err := os.Stat(filepath.Join(f.root, rel)); (err == nil) != want {
			t.Errorf("%s: present=%v, want %v", rel, err == nil, want)
		}
	}
}

func TestVerifyFileIndexes(t *testing.T) {
	t.Run("consistent", func(t *testing.T) {
		vs := newVerifyStore(t)
		w := vs.f.open(false)
		indexFor(t, w, vs.recL)
		w.Close()
		if res := runVerify(t, vs.f.open(true), false); len(res.Problems) != 0 {
			t.Errorf("problems: %v", res.Problems)
		}
	})
	t.Run("snapshot file changed on disk", func(t *testing.T) {
		// A linked COPY would spread it into new layers: the snapshot goes (it is unpacked
		// again from its blob when needed) with its index; the records stay.
		vs := newVerifyStore(t)
		w := vs.f.open(false)
		idx := indexFor(t, w, vs.recL)
		w.Close()
		file := vs.path("snapshots", vs.recL.DiffID.Encoded(), "d", "file")
		if err := os.WriteFile(file, []byte("changed"), 0o644); err != nil {
			t.Fatal(err)
		}
		assertRepairs(t, vs, filepath.Join("snapshots", vs.recL.DiffID.Encoded()), idx)
	})
	t.Run("indexed file replaced by a symlink", func(t *testing.T) {
		vs := newVerifyStore(t)
		w := vs.f.open(false)
		idx := indexFor(t, w, vs.recL)
		w.Close()
		file := vs.path("snapshots", vs.recL.DiffID.Encoded(), "d", "file")
		os.Remove(file)
		if err := os.Symlink("/etc/passwd", file); err != nil {
			t.Fatal(err)
		}
		assertRepairs(t, vs, filepath.Join("snapshots", vs.recL.DiffID.Encoded()), idx)
	})
	t.Run("damaged or stray index", func(t *testing.T) {
		vs := newVerifyStore(t)
		w := vs.f.open(false)
		idx := indexFor(t, w, vs.recL)
		w.Close()
		data, _ := os.ReadFile(vs.path(idx))
		data[len(data)/2] ^= 1
		os.WriteFile(vs.path(idx), data, 0o600)
		stray := filepath.Join("snapfiles", randKey(t))
		os.WriteFile(vs.path(stray), []byte("x"), 0o600)
		junk := filepath.Join("snapfiles", "junk")
		os.WriteFile(vs.path(junk), []byte("x"), 0o600)
		assertRepairs(t, vs, idx, stray, junk)
	})
}
