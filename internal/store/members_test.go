package store

import (
	"bytes"
	"os"
	"testing"
	"time"
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
