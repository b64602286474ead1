package store

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Member indexes and position pointers go with their blob: kept while the blob is, swept with it.
func TestGCSweepsMemberIndexesWithTheirBlobs(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	now := time.Now()
	old, lOld := f.record(w, 20_000, now.Add(-2*time.Hour))
	_, lNew := f.record(w, 20_000, now)
	for _, l := range []Layer{lOld, lNew} {
		if err := w.PutMembers(l.Digest, []byte("index of "+l.Digest.String())); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.SetLastBlob("pos-old", lOld.Digest); err != nil {
		t.Fatal(err)
	}
	if err := w.SetLastBlob("pos-new", lNew.Digest); err != nil {
		t.Fatal(err)
	}
	if d, err := w.LastBlob("pos-new"); err != nil || d != lNew.Digest {
		t.Fatalf("LastBlob = %s, %v", d, err)
	}
	w.Close()

	s := f.open(true)
	if _, err := s.GC(GCOptions{Until: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRecord(old.Key); err == nil {
		t.Fatal("old record kept: the test evicts nothing")
	}
	if _, err := s.Members(lOld.Digest); !os.IsNotExist(err) {
		t.Errorf("index of a swept blob: %v", err)
	}
	if _, err := s.LastBlob("pos-old"); !os.IsNotExist(err) {
		t.Errorf("pointer to a swept blob: %v", err)
	}
	if got, err := s.Members(lNew.Digest); err != nil || !bytes.Equal(got, []byte("index of "+lNew.Digest.String())) {
		t.Errorf("index of a kept blob: %q, %v", got, err)
	}
	if d, err := s.LastBlob("pos-new"); err != nil || d != lNew.Digest {
		t.Errorf("pointer to a kept blob: %s, %v", d, err)
	}
	if res, err := s.Verify(false); err != nil || res.Unrepaired() != 0 {
		t.Errorf("verify after GC: %v %v", err, res.Problems)
	}
}

// Cache files describing what is gone are orphans verify reports and repairs, and GC sweeps: a
// member index or position pointer whose blob is gone, a last-layer pointer whose layer record is
// gone, an output memo whose output is gone. The ones describing what is there stay.
func TestVerifyAndGCRemoveOrphanCacheFiles(t *testing.T) {
	f := newFixture(t)
	w := f.open(false)
	_, l := f.record(w, 20_000, time.Now())
	gone := digest.FromString("gone")
	out := filepath.Join(t.TempDir(), "out.tar")
	if err := os.WriteFile(out, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	goneOut := filepath.Join(t.TempDir(), "gone.tar")
	w.Close()
	write := func(s *Store) {
		for _, err := range []error{
			s.PutMembers(l.Digest, []byte("kept")), s.SetLastBlob("pos-kept", l.Digest), s.SetLastLayer("pos-kept", l.DiffID), s.SetOutputMemo(out, "memo"),
			s.PutMembers(gone, []byte("orphan")), s.SetLastBlob("pos-gone", gone), s.SetLastLayer("pos-gone", gone), s.SetOutputMemo(goneOut, "memo"),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	for name, repair := range map[string]func(s *Store) error{
		"verify --repair": func(s *Store) error { _, err := s.Verify(true); return err },
		"GC":              func(s *Store) error { _, err := s.GC(GCOptions{KeepStorage: 1 << 30}); return err },
	} {
		s := f.open(true)
		write(s)
		res, err := s.Verify(false)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, p := range res.Problems {
			msgs = append(msgs, p.String())
		}
		if len(msgs) != 4 {
			t.Errorf("verify found %d problems, want the 4 orphans:\n%s", len(msgs), strings.Join(msgs, "\n"))
		}
		if err := repair(s); err != nil {
			t.Fatal(err)
		}
		if res, err := s.Verify(false); err != nil || res.Unrepaired() != 0 {
			t.Errorf("verify after %s: %v %v", name, err, res.Problems)
		}
		if _, err := s.Members(l.Digest); err != nil {
			t.Errorf("%s: kept member index: %v", name, err)
		}
		if d, err := s.LastBlob("pos-kept"); err != nil || d != l.Digest {
			t.Errorf("%s: kept blob pointer: %s %v", name, d, err)
		}
		if d, err := s.LastLayer("pos-kept"); err != nil || d != l.DiffID {
			t.Errorf("%s: kept layer pointer: %s %v", name, d, err)
		}
		if s.OutputMemo(out) != "memo" {
			t.Errorf("%s: kept output memo lost", name)
		}
		s.Close()
	}
}
