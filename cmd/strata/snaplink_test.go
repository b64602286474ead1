package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ociImageLayers reads an OCI layout directory's only image: its layers' blob digests and
// diffIDs, bottom first.
func ociImageLayers(t *testing.T, layout string) (blobs, diffIDs []string) {
	t.Helper()
	var index struct{ Manifests []struct{ Digest string } }
	var manifest struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	var config struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	for _, step := range []struct {
		file string
		v    any
	}{{filepath.Join(layout, "index.json"), &index}} {
		if err := json.Unmarshal([]byte(readFile(t, step.file)), step.v); err != nil {
			t.Fatal(err)
		}
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("%s: %d manifests", layout, len(index.Manifests))
	}
	if err := json.Unmarshal([]byte(readFile(t, blobPath(layout, index.Manifests[0].Digest))), &manifest); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(readFile(t, blobPath(layout, manifest.Config.Digest))), &config); err != nil {
		t.Fatal(err)
	}
	for _, l := range manifest.Layers {
		blobs = append(blobs, l.Digest)
	}
	return blobs, config.RootFS.DiffIDs
}

func inodeOf(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

var linkedLine = regexp.MustCompile(`(?m)^#\d+ (\d+) unchanged files \(.*\) linked from the previous snapshot$`)

// An edit costs what changed: the COPY that re-runs after a one-file edit hard-links every other
// file from the snapshot its last run left, and its layer is byte for byte the layer a --no-cache
// build of the same context writes in a fresh store (diffID and blob). RUN steps writing to the
// linked files afterwards (through the overlay, and in rw bind and cache mounts of the stage)
// change neither snapshot: `store verify` checks every indexed file against its digest.
func TestCopyLinksUnchangedFiles(t *testing.T) {
	e := newEnv(t)
	files := map[string]string{
		"Dockerfile": `FROM {{BASE}} AS files
COPY . /
FROM files
COPY --chown=1234:1234 --chmod=0750 app /root/
RUN echo more >> /app/a.txt && chmod 600 /app/sub/b.txt && touch /root/c.sh && rm /app/gone.txt
RUN --mount=type=bind,from=files,source=/app,target=/m,rw echo x >> /m/a.txt && echo y >> /m/many/d0/f007.txt
RUN --mount=type=cache,target=/c,from=files,source=/app echo z >> /c/a.txt && echo z >> /c/many/d0/f007.txt
`,
		"app/a.txt":     "alpha\n",
		"app/sub/b.txt": "bravo\n",
		"app/c.sh":      "#!/bin/sh\necho c\n",
		"app/gone.txt":  "to be removed by RUN\n",
	}
	for i := 0; i < 200; i++ {
		files[fmt.Sprintf("app/many/d%d/f%03d.txt", i/50, i)] = strings.Repeat(fmt.Sprintf("file %d\n", i), i%17+1)
	}
	ctx := e.project("ctx", files)
	if err := os.Chmod(filepath.Join(ctx, "app/c.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/b.txt", filepath.Join(ctx, "app/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(ctx, "app/a.txt"), filepath.Join(ctx, "app/hard")); err != nil {
		t.Fatal(err)
	}
	// Times a second in the past, so the edit below always changes the mtime.
	old := time.Now().Add(-time.Minute)
	filepath.Walk(ctx, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })

	out1 := filepath.Join(e.dir, "one")
	r := e.build("-o", "type=oci,tar=false,dest="+out1, ctx)
	if m := linkedLine.FindString(r.out); m != "" {
		t.Errorf("a first build linked files: %s", m)
	}
	_, ids1 := ociImageLayers(t, out1)

	// One file edited (and the directory's time kept): both COPY steps re-run.
	edited := filepath.Join(ctx, "app/many/d1/f060.txt")
	if err := os.WriteFile(edited, []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Dir(edited), old, old)
	out2 := filepath.Join(e.dir, "two")
	r = e.build("-o", "type=oci,tar=false,dest="+out2, ctx)
	counts := linkedLine.FindAllStringSubmatch(r.out, -1)
	// COPY . /: every regular file but the edited one, the Dockerfile's copy included, and the
	// hard-link pair (always copied); COPY app /root/: the same less the Dockerfile.
	if len(counts) != 2 || counts[0][1] != "203" || counts[1][1] != "202" {
		t.Errorf("linked-file lines %q, want 203 then 202 files\n%s", counts, r.out)
	}
	blobs2, ids2 := ociImageLayers(t, out2)

	// The same context built from scratch in another store.
	e3 := newEnv(t)
	out3 := filepath.Join(e3.dir, "three")
	r = e3.build("--no-cache", "-o", "type=oci,tar=false,dest="+out3, ctx)
	if m := linkedLine.FindString(r.out); m != "" {
		t.Errorf("a --no-cache build linked files: %s", m)
	}
	blobs3, ids3 := ociImageLayers(t, out3)
	if len(ids2) != 6 || len(ids3) != 6 {
		t.Fatalf("layers: %d and %d, want base + 5", len(ids2), len(ids3))
	}
	for i, what := range map[int]string{1: "COPY . /", 2: "COPY --chown --chmod app /root/"} {
		if ids2[i] != ids3[i] || blobs2[i] != blobs3[i] {
			t.Errorf("%s: linked layer %s (blob %s), cold layer %s (blob %s)", what, ids2[i], blobs2[i], ids3[i], blobs3[i])
		}
		if ids1[i] == ids2[i] {
			t.Errorf("%s: the edit did not change the layer", what)
		}
	}

	// The unchanged files of the new snapshots are the old snapshots' inodes; the edited one is not.
	snap := func(id, p string) string {
		return filepath.Join(e.root, "snapshots", strings.TrimPrefix(id, "sha256:"), p)
	}
	for i, p := range map[int]string{1: "app/many/d0/f007.txt", 2: "root/many/d3/f199.txt"} {
		if inodeOf(t, snap(ids1[i], p)) != inodeOf(t, snap(ids2[i], p)) {
			t.Errorf("%s was copied, not linked", p)
		}
	}
	if inodeOf(t, snap(ids1[1], "app/many/d1/f060.txt")) == inodeOf(t, snap(ids2[1], "app/many/d1/f060.txt")) {
		t.Error("the edited file shares the old snapshot's inode")
	}
	// The RUN steps wrote to linked files, through the overlay and in rw bind and cache mounts
	// of the stage: both snapshots still hold what their COPY wrote.
	for _, id := range []string{ids1[1], ids2[1]} {
		if got := readFile(t, snap(id, "app/a.txt")); got != "alpha\n" {
			t.Errorf("snapshot %s: app/a.txt = %q", id, got)
		}
		if got, want := readFile(t, snap(id, "app/many/d0/f007.txt")), files["app/many/d0/f007.txt"]; got != want {
			t.Errorf("snapshot %s: app/many/d0/f007.txt = %q, want %q", id, got, want)
		}
	}
	if r := e.run("store", "verify"); r.err != nil || !strings.Contains(r.out, ": ok") {
		t.Errorf("strata store verify: %v\n%s", r.err, r.out)
	}
	// A rebuild with nothing changed is all cached.
	if r := e.build("-o", "type=oci,tar=false,dest="+filepath.Join(e.dir, "four"), ctx); len(missed(r.out)) > 0 {
		t.Errorf("no-change rebuild missed %v", missed(r.out))
	}
	// A --no-cache build links nothing but leaves the file index: the next edit links from it.
	if err := os.WriteFile(filepath.Join(ctx, "app/many/d1/f061.txt"), []byte("edited too\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e3.build("-o", "type=oci,tar=false,dest="+filepath.Join(e3.dir, "after"), ctx)
	if counts := linkedLine.FindAllStringSubmatch(r.out, -1); len(counts) != 2 || counts[0][1] != "203" || counts[1][1] != "202" {
		t.Errorf("after a --no-cache build, linked-file lines %q, want 203 then 202 files", counts)
	}
}
