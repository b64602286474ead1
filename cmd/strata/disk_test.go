package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A store on a full disk: the build fails with the cause and the Dockerfile line, nothing
// half-written stays behind, and once space is back the same store builds and caches normally.
func TestFullDiskFailsCleanly(t *testing.T) {
	e := newEnv(t)
	if err := os.MkdirAll(e.root, 0o755); err != nil {
		t.Fatal(err)
	}
	// 4 MiB holds the busybox base (≈1 MiB compressed, ≈2 MiB unpacked) but not a 6 MiB COPY.
	if err := unix.Mount("tmpfs", e.root, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(e.root, unix.MNT_DETACH) })

	big := make([]byte, 6<<20)
	rand.Read(big)
	ctx := e.project("full", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY small.txt /small.txt\nCOPY big.bin /big.bin\n",
		"small.txt":  "small\n",
	})
	if err := os.WriteFile(filepath.Join(ctx, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.buildFail(ctx)
	if !strings.Contains(r.out, "no space left on device") || !strings.Contains(r.out, "Dockerfile:3") {
		t.Fatalf("want the cause and Dockerfile:3 in the error:\n%s", r.out)
	}
	// Nothing of the failed step is left in scratch space.
	ents, _ := os.ReadDir(filepath.Join(e.root, "tmp"))
	if len(ents) != 0 {
		var names []string
		for _, en := range ents {
			names = append(names, en.Name())
		}
		t.Fatalf("store tmp/ not empty after failure: %v", names)
	}
	// With the big file gone the same store builds, reusing what the failed build committed.
	if err := os.WriteFile(filepath.Join(ctx, "big.bin"), []byte("now small\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.build(ctx)
	if st := stepStates(r.out)["[3/3] COPY big.bin /big.bin"]; st != "MISS" {
		t.Fatalf("COPY big.bin: %s, want MISS\n%s", st, r.out)
	}
	if st := stepStates(r.out)["[2/3] COPY small.txt /small.txt"]; st != "CACHED" {
		t.Fatalf("COPY small.txt: %s, want CACHED (committed before the failure)\n%s", st, r.out)
	}
	r = e.build(ctx)
	if m := missed(r.out); len(m) != 0 {
		t.Fatalf("rebuild after recovery missed %v\n%s", m, r.out)
	}
}
