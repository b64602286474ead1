package contenthash

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A tree deeper than the descriptor limit is walked whole: a directory is closed before its
// subdirectories are walked, so the walk never holds one descriptor per level.
func TestDeepTree(t *testing.T) {
	d := t.TempDir() // first, so its removal runs after the limit is restored
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	old := lim
	lim.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })

	const depth = 600
	p := filepath.Join(d, strings.Repeat("d/", depth))
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := sel(t, &Source{Root: d}, ".")
	if len(s.Files) != depth+1 || !strings.HasSuffix(s.Files[len(s.Files)-1].Path, "d/f") {
		t.Errorf("%d entries, last %q", len(s.Files), s.Files[len(s.Files)-1].Path)
	}
}
