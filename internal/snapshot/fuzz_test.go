package snapshot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A layer is hostile input: whatever the tar holds, Unpack never panics and never writes outside
// the directory it unpacks into. The fuzzer mutates tars that already try to escape (.., absolute
// names, links out, entries below links).
func FuzzUnpack(f *testing.F) {
	seed := func(ents ...ent) {
		f.Add(makeTar(f, ents...))
	}
	seed(file("a", "x"), dir("d"), file("d/b", "y"))
	// Escapes aim at the sentinel beside the layer directory (or at paths that do not exist on the
	// host), so a regression shows as a failure here, not as damage to the machine.
	seed(symlink("l", ".."), file("l/sentinel", "pwned"))
	seed(symlink("l", "/nonexistent-strata-fuzz"), file("l/x", "out"))
	seed(file("../sentinel", "pwned"), file("/nonexistent-strata-fuzz", "out"))
	seed(hardlink("h", "../sentinel"), file("h", "pwned"))
	seed(dir("d"), file("d/.wh..wh..opq", ""), file(".wh.d", ""), file(".wh...", ""))
	seed(symlink("d", "."), file("d/d/d/f", "loop"))
	f.Add([]byte("not a tar at all"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if os.Geteuid() != 0 {
			t.Skip("needs root: layers carry owners and device nodes")
		}
		parent := t.TempDir()
		dir := filepath.Join(parent, "layer")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sentinel := filepath.Join(parent, "sentinel")
		if err := os.WriteFile(sentinel, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = Unpack(bytes.NewReader(data), dir)
		ents, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 2 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("unpack wrote beside its directory: %v", names)
		}
		if b, err := os.ReadFile(sentinel); err != nil || string(b) != "keep" {
			t.Fatalf("unpack touched a file outside its directory: %q %v", b, err)
		}
	})
}
