package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// The target gets the new bytes and mode; the temp file lives in Scratch and is gone afterwards,
// there and beside the target.
func TestWrite(t *testing.T) {
	dir, scratch := t.TempDir(), t.TempDir()
	p := filepath.Join(dir, "rec.json")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), Options{Scratch: scratch, Perm: 0o644, SyncDir: true}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if err != nil || string(b) != "new" || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%q %v %v", b, fi.Mode(), err)
	}
	for _, d := range []string{dir, scratch} {
		ents, _ := os.ReadDir(d)
		if d == dir && len(ents) != 1 || d == scratch && len(ents) != 0 {
			t.Errorf("%s holds %v", d, ents)
		}
	}
	if err := Write(filepath.Join(dir, "missing", "x"), []byte("x"), Options{}); err == nil {
		t.Error("a write into a missing directory succeeded")
	}
}
