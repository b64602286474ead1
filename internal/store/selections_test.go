package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestSelectionMemo(t *testing.T) {
	s := newFixture(t).open(false)
	key := strings.Repeat("a1", 32)
	if _, err := s.GetSelection(key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing memo: %v, want ErrNotExist", err)
	}
	m := SelectionMemo{KeyDigest: digest.FromString("k").String(), Digest: digest.FromString("d"), Files: 1, Summary: map[string]string{"a": "644 x"}}
	if err := s.PutSelection(key, m); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSelection(key)
	if err != nil || got.Digest != m.Digest || got.KeyDigest != m.KeyDigest || got.Files != 1 || got.Summary["a"] != "644 x" {
		t.Fatalf("GetSelection = %+v, %v; want %+v", got, err, m)
	}
	if err := s.PutSelection("../x", m); err == nil {
		t.Error("PutSelection accepted a bad key")
	}
	if err := s.PutSelection(key, SelectionMemo{KeyDigest: "nope", Digest: m.Digest}); err == nil {
		t.Error("PutSelection accepted a malformed memo")
	}
	// A damaged file counts as missing.
	for _, bad := range []string{`{"keyDigest":"x","digest":"sha256:zz"}`, `{`} {
		if err := os.WriteFile(filepath.Join(s.Root(), "selections", key+".json"), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetSelection(key); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("damaged memo %s: %v, want ErrNotExist", bad, err)
		}
	}
}
