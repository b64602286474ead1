package layerblob_test

import (
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/klauspost/pgzip"

	"github.com/strata-build/strata/internal/layerblob"
	"github.com/strata-build/strata/internal/snapshot"
)

// The benchmarks commit a bigctx-sized layer (20,000 text files averaging 10 KB, 200 MB) from a
// tree in the page cache: the whole-layer pgzip strata used before members, a cold member
// commit, and a commit after a one-file edit that copies every other member.

var (
	benchOnce sync.Once
	benchDir  string
)

// benchTree is the generated tree, or LAYERBLOB_BENCH_DIR (e.g. bench/gen-projects' bigctx, whose
// assets are incompressible) when set.
func benchTree(b *testing.B) string {
	if d := os.Getenv("LAYERBLOB_BENCH_DIR"); d != "" {
		return d
	}
	benchOnce.Do(func() {
		d, err := os.MkdirTemp("", "layerblob-bench-")
		if err != nil {
			b.Fatal(err)
		}
		makeTree(b, d, 20000, 10<<10)
		benchDir = d
	})
	if benchDir == "" {
		b.Fatal("no bench tree")
	}
	return benchDir
}

func BenchmarkCommitWholePgzip(b *testing.B) {
	dir := benchTree(b)
	for b.Loop() {
		zw := pgzip.NewWriter(io.Discard)
		if _, err := snapshot.Diff(dir, io.MultiWriter(zw, sha256.New())); err != nil {
			b.Fatal(err)
		}
		zw.Close()
	}
}

func BenchmarkCommitMembersCold(b *testing.B) {
	dir := benchTree(b)
	for b.Loop() {
		commit(b, dir)
	}
}

func BenchmarkCommitMembersOneEdit(b *testing.B) {
	dir := benchTree(b)
	first := commit(b, dir)
	edit := filepath.Join(dir, "src/d07/f01007.go")
	if os.Getenv("LAYERBLOB_BENCH_DIR") != "" {
		edit = firstFile(b, dir)
		old, err := os.ReadFile(edit)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.WriteFile(edit, old, 0o644) })
	}
	if err := os.WriteFile(edit, []byte("package edited\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var st layerblob.Stats
	for b.Loop() {
		st = commit(b, dir, first.source()).stats
	}
	b.ReportMetric(float64(st.Compressed), "compressed-members")
	b.ReportMetric(float64(st.Members), "members")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// BenchmarkDiffOnly is the floor every commit pays: the tar with its diffID, no compression.
func BenchmarkDiffOnly(b *testing.B) {
	dir := benchTree(b)
	for b.Loop() {
		if _, err := snapshot.Diff(dir, sha256.New()); err != nil {
			b.Fatal(err)
		}
	}
}

func firstFile(b *testing.B, dir string) string {
	var found string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && found == "" && d.Type().IsRegular() {
			found = p
		}
		return nil
	})
	if found == "" {
		b.Fatalf("no file under %s", dir)
	}
	return found
}
