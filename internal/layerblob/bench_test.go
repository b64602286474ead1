package layerblob_test

import (
	"crypto/sha256"
	"io"
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

func benchTree(b *testing.B) string {
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
	if err := os.WriteFile(filepath.Join(dir, "src/d07/f01007.go"), []byte("package edited\n"), 0o644); err != nil {
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
