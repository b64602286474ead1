package copier

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-build/strata/internal/contenthash"
)

// A cancelled context stops a copy within checkEvery entries, with the context's error.
func TestCopyStopsWhenCancelled(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	const n = 2000
	for i := range n {
		p := filepath.Join(src, fmt.Sprintf("d%d/f%04d", i/100, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sel, err := (&contenthash.Source{Root: src}).Select(context.Background(), []string{"."}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Copy(ctx, src, sel, dst, "/", Options{FromContext: true})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Copy with a cancelled context: %v", err)
	}
	written := 0
	filepath.WalkDir(dst, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			written++
		}
		return nil
	})
	if written >= checkEvery {
		t.Errorf("%d files written after the cancel, want fewer than %d", written, checkEvery)
	}
}
