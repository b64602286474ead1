package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// duRegularBytes is what `du -sb` says of the store (scratch under tmp/ left out) less the
// sizes of everything but regular files (directories, symlinks, devices), which strata does not
// count: the apparent size of the store's regular files, each inode once.
func duRegularBytes(t *testing.T, root string) int64 {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, e := range ents {
		if e.Name() != "tmp" {
			args = append(args, filepath.Join(root, e.Name()))
		}
	}
	// One du over every path: GNU du counts an inode linked from several of them once.
	out, err := exec.Command("du", append([]string{"-sbc"}, args...)...).Output()
	if err != nil {
		t.Fatalf("du: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	total, err := strconv.ParseInt(strings.Fields(lines[len(lines)-1])[0], 10, 64)
	if err != nil {
		t.Fatalf("du output %q: %v", out, err)
	}
	for _, a := range args {
		filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.Type().IsRegular() {
				if fi, err := os.Lstat(p); err == nil {
					total -= fi.Size()
				}
			}
			return nil
		})
	}
	return total
}

// pathSizes is the sum of the sizes of the regular files under dir counted once per path, and
// how many of them have more than one link.
func pathSizes(dir string) (size int64, linked int) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := os.Lstat(p); err == nil {
				size += fi.Size()
				if fi.Sys().(*syscall.Stat_t).Nlink > 1 {
					linked++
				}
			}
		}
		return nil
	})
	return size, linked
}

// storeNames lists a store directory.
func storeNames(t *testing.T, root, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// `strata du` and GC count every store directory, and a file a re-run COPY hard-linked from
// the previous snapshot once (as du -sb does); GC removes the metadata of what it evicts, and
// store verify finds and repairs what it leaves.
func TestDuAndGCCountLinkedFilesOnce(t *testing.T) {
	e := newEnv(t)
	files := map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY . /app\n"}
	for i := 0; i < 40; i++ {
		files[fmt.Sprintf("d%d/f%02d.bin", i%4, i)] = randomText(t, 20_000)
	}
	ctx := e.project("ctx", files)
	out1 := filepath.Join(e.dir, "one.tar")
	// Each export twice: the second finds its archive up to date and records an output memo.
	e.build("--gc-keep-storage", "off", "-o", "type=oci,dest="+out1, ctx)
	e.build("--gc-keep-storage", "off", "-o", "type=oci,dest="+out1, ctx)
	// Measured now, the first COPY's files have one link each: the size cache must learn that
	// the rebuild shares them.
	storeTotal(t, e.root)
	if err := os.WriteFile(filepath.Join(ctx, "d1/f01.bin"), []byte(randomText(t, 20_000)), 0o644); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(e.dir, "two.tar")
	r := e.build("--gc-keep-storage", "off", "-o", "type=oci,dest="+out2, ctx)
	if !linkedLine.MatchString(r.out) {
		t.Fatalf("the rebuild linked no files:\n%s", r.out)
	}
	e.build("--gc-keep-storage", "off", "-o", "type=oci,dest="+out2, ctx)
	for _, dir := range []string{"members", "snapfiles", "outputs"} {
		if len(storeNames(t, e.root, dir)) == 0 {
			t.Fatalf("store %s/ is empty: nothing to count", dir)
		}
	}

	storeTotal(t, e.root) // writes the snapshot size cache, a store file too
	got := storeTotal(t, e.root)
	want := duRegularBytes(t, e.root)
	snapApparent, linked := pathSizes(filepath.Join(e.root, "snapshots"))
	t.Logf("strata: %d bytes, du -sb (regular files): %d; snapshots %d bytes by path, %d paths with links", got, want, snapApparent, linked)
	if linked < 39*2 {
		t.Fatalf("%d snapshot paths with links, want the 39 unchanged files in both snapshots", linked)
	}
	if got != want {
		t.Errorf("strata counts %d bytes, du -sb %d", got, want)
	}

	// A limit the store meets once nothing is counted twice: GC evicts nothing.
	if r := e.run("prune", "--keep-storage", fmt.Sprint(want)); r.err != nil {
		t.Fatalf("prune: %v\n%s", r.err, r.out)
	}
	if n := len(storeNames(t, e.root, "snapshots")); n != 3 {
		t.Errorf("prune to the store's own size left %d snapshots, want base + 2 COPY", n)
	}

	// Room for all but the first build's layer (its blob, incompressible, is ~800 KB): GC evicts
	// the first build and keeps the second cached.
	if r := e.run("prune", "--keep-storage", fmt.Sprint(want-10_000)); r.err != nil {
		t.Fatalf("prune: %v\n%s", r.err, r.out)
	}
	if n := len(storeNames(t, e.root, "snapshots")); n != 2 {
		t.Errorf("prune left %d snapshots, want base + the second COPY", n)
	}
	allCached(t, e.build("--gc-keep-storage", "off", ctx).out)
	// No metadata of the evicted layer is left.
	for _, name := range storeNames(t, e.root, "snapfiles") {
		if _, err := os.Stat(filepath.Join(e.root, "snapshots", name)); err != nil {
			t.Errorf("snapfiles/%s outlived its snapshot", name)
		}
	}
	for _, name := range storeNames(t, e.root, "members") {
		hex := name
		if strings.HasPrefix(name, "pos-") {
			hex = strings.TrimPrefix(readFile(t, filepath.Join(e.root, "members", name)), "sha256:")
		}
		if _, err := os.Stat(filepath.Join(e.root, "blobs/sha256", hex)); err != nil {
			t.Errorf("members/%s outlived its blob", name)
		}
	}
	if r := e.run("store", "verify"); r.err != nil {
		t.Errorf("store verify after GC: %v\n%s", r.err, r.out)
	}

	// An output gone: verify reports its memo, repair and GC remove such memos.
	memos := len(storeNames(t, e.root, "outputs"))
	if err := os.Remove(out1); err != nil {
		t.Fatal(err)
	}
	r = e.run("store", "verify")
	if r.err == nil || !strings.Contains(r.out, "its output "+out1+" is gone") {
		t.Errorf("store verify with an output removed: %v\n%s", r.err, r.out)
	}
	if r := e.run("store", "verify", "--repair"); r.err != nil {
		t.Errorf("store verify --repair: %v\n%s", r.err, r.out)
	}
	if n := len(storeNames(t, e.root, "outputs")); n != memos-1 {
		t.Errorf("%d output memos after repair, want %d", n, memos-1)
	}
	if err := os.Remove(out2); err != nil {
		t.Fatal(err)
	}
	if r := e.run("prune", "--keep-storage", "1GB"); r.err != nil {
		t.Fatalf("prune: %v\n%s", r.err, r.out)
	}
	if n := len(storeNames(t, e.root, "outputs")); n != memos-2 {
		t.Errorf("%d output memos after GC, want %d", n, memos-2)
	}
	if got, want := storeTotal(t, e.root), duRegularBytes(t, e.root); got != want {
		t.Errorf("after GC: strata counts %d bytes, du -sb %d", got, want)
	}
}
