package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// stagesDockerfile builds /out/app in a builder stage from a 1 MiB file and copies only that into
// the final image. The builder also writes /out/notes.txt, which the final stage never reads.
func stagesDockerfile(base string) string {
	return "FROM " + base + " AS builder\n" +
		"COPY big.bin /src/big.bin\n" +
		"COPY version.txt notes.txt /src/\n" +
		"RUN mkdir -p /out && cat /src/version.txt > /out/app && head -c 4096 /src/big.bin | md5sum >> /out/app && cp /src/notes.txt /out/notes.txt\n" +
		"\n" +
		"FROM " + base + "\n" +
		"COPY --from=builder /out/app /app\n" +
		"RUN cat /app > /app.copy\n"
}

// A multi-stage build on a fresh runner: the key of COPY --from=builder names the files it
// selects in the builder's filesystem, and a selection memo carried by the cache gives that
// checksum without fetching the builder's layers. So runner B, with an empty store, gets every
// step CACHED and moves no layer bytes, exactly as for a single-stage build.
func TestRegistryCacheStagesAcrossRunners(t *testing.T) {
	proxy, reg := cacheProxy(t)
	files := map[string]string{
		"Dockerfile":  stagesDockerfile(reg + "/busybox:latest"),
		"big.bin":     bigFile(t, 1<<20),
		"version.txt": "v1\n",
		"notes.txt":   "notes 1\n",
	}
	cache := reg + "/stages:cache"
	args := func(e *env, ctx, tag string) []string {
		return []string{"--cache-from", cache, "--cache-to", "type=registry,ref=" + cache + ",mode=max",
			"--output", "type=image,oci-mediatypes=true", "--push", "-t", reg + "/stages:" + tag,
			"--metadata-file", filepath.Join(e.dir, tag+".json"), ctx}
	}
	digestOf := func(e *env, tag string) any {
		return metadata(t, filepath.Join(e.dir, tag+".json"))["containerimage.digest"]
	}

	a := newEnv(t)
	a.build(args(a, a.project("app", files), "1")...)
	digestA := digestOf(a, "1")

	// Runner B: empty store, same sources.
	b := newEnv(t)
	proxy.Reset()
	r := b.build(args(b, b.project("app", files), "2")...)
	for name, st := range stepStates(r.out) {
		if strings.Contains(name, "FROM") {
			continue
		}
		if st != "CACHED" {
			t.Errorf("runner B: %s is %s, want CACHED\n%s", name, st, r.out)
		}
	}
	if got := digestOf(b, "2"); got != digestA {
		t.Errorf("runner B pushed %v, runner A %v", got, digestA)
	}
	s := proxy.Stats()
	if s.BlobBytesDown > 64<<10 || s.BlobBytesUp != 0 {
		t.Errorf("runner B moved %d bytes down and %d up; want no layer bytes (the builder's 1 MiB layer must stay in the registry)\n%+v", s.BlobBytesDown, s.BlobBytesUp, s)
	}

	// Runner C: an edit that changes the builder's output re-runs the builder step that reads it
	// and everything in the final stage that reads /out/app.
	c := newEnv(t)
	files["version.txt"] = "v2\n"
	proxy.Reset()
	r = c.build(args(c, c.project("app", files), "3")...)
	got := missed(r.out)
	sort.Strings(got)
	want := []string{
		"[builder 3/4] COPY version.txt notes.txt /src/",
		"[builder 4/4] RUN mkdir -p /out",
		"[stage-1 2/3] COPY --from=builder /out/app /app",
		"[stage-1 3/3] RUN cat /app > /app.copy",
	}
	if !missedExactly(got, want) {
		t.Errorf("runner C re-ran %q, want %q\n%s", got, want, r.out)
	}
	digestC := digestOf(c, "3")
	if digestC == digestA {
		t.Errorf("runner C's image %v is runner A's although /app changed", digestC)
	}

	// Runner D: an edit to a builder input that /out/app does not depend on. The builder re-runs,
	// but COPY --from=builder selects the same files, so it and the step after it stay cached
	// (early cutoff) and the image is runner C's.
	d := newEnv(t)
	files["notes.txt"] = "notes 2\n"
	r = d.build(args(d, d.project("app", files), "4")...)
	states := stepStates(r.out)
	got = missed(r.out)
	sort.Strings(got)
	want = []string{"[builder 3/4] COPY version.txt notes.txt /src/", "[builder 4/4] RUN mkdir -p /out"}
	if !missedExactly(got, want) {
		t.Errorf("runner D re-ran %q, want %q\n%s", got, want, r.out)
	}
	for name, st := range states {
		if strings.HasPrefix(name, "[stage-1") && !strings.Contains(name, "FROM") && st != "CACHED" {
			t.Errorf("runner D: %s is %s, want CACHED\n%s", name, st, r.out)
		}
	}
	if got := digestOf(d, "4"); got != digestC {
		t.Errorf("runner D pushed %v, want runner C's %v", got, digestC)
	}
}

// missedExactly compares sorted missed steps by prefix (RUN lines are long).
func missedExactly(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			return false
		}
	}
	return true
}

// A selection memo that disagrees with the files cannot make a step hit wrongly: the step misses
// on the memo's key, the real selection is made, and the step runs (or hits) on the real key.
// The memo is planted under the exact key the next build computes (memo keys are content
// identities, so a second store that built the same sources names the same file).
func TestCacheSelectionMemoBogusNoWrongHit(t *testing.T) {
	files := map[string]string{
		"Dockerfile":  stagesDockerfile("{{BASE}}"),
		"big.bin":     "small this time\n",
		"version.txt": "v1\n",
		"notes.txt":   "notes\n",
	}
	s := newEnv(t)
	ctx := s.project("app", files)
	s.build("-o", "type=local,dest="+filepath.Join(s.dir, "out1"), ctx)

	// Another store builds v2: its only memo is the one the v2 build in s will look up.
	files["version.txt"] = "v2\n"
	x := newEnv(t)
	x.build("-o", "type=local,dest="+filepath.Join(x.dir, "out"), x.project("app", files))
	memos, err := filepath.Glob(filepath.Join(x.root, "selections", "*.json"))
	if err != nil || len(memos) != 1 {
		t.Fatalf("store x holds memos %v (%v), want exactly one", memos, err)
	}
	name := filepath.Base(memos[0])
	bogus := `{"keyDigest":"sha256:` + strings.Repeat("ab", 32) + `","digest":"sha256:` + strings.Repeat("cd", 32) +
		`","files":2,"summary":{"out":"20000000755 sha256:x  0:0","out/app":"644 sha256:y  0:0"}}`
	if err := os.WriteFile(filepath.Join(s.root, "selections", name), []byte(bogus), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx = s.project("app", files)
	out := filepath.Join(s.dir, "out2")
	r := s.build("-o", "type=local,dest="+out, ctx)
	if st := stepStates(r.out)["[stage-1 2/3] COPY --from=builder /out/app /app"]; st != "MISS" {
		t.Errorf("COPY --from is %s after the builder's output changed, want MISS\n%s", st, r.out)
	}
	app := readFile(t, filepath.Join(out, "app"))
	if !strings.HasPrefix(app, "v2\n") || readFile(t, filepath.Join(out, "app.copy")) != app {
		t.Errorf("/app is %q (/app.copy %q), want the v2 build's", app, readFile(t, filepath.Join(out, "app.copy")))
	}
	if want := readFile(t, filepath.Join(x.dir, "out", "app")); app != want {
		t.Errorf("/app is %q, the reference build made %q", app, want)
	}
	// The real selection replaced the bogus memo.
	if got, want := readFile(t, filepath.Join(s.root, "selections", name)), readFile(t, memos[0]); got != want {
		t.Errorf("memo after the build:\n%s\nwant the reference store's:\n%s", got, want)
	}

	// A damaged memo of an unchanged source costs nothing worse than a mount: the step still
	// hits on the real key.
	if err := os.WriteFile(filepath.Join(s.root, "selections", name), []byte(bogus), 0o600); err != nil {
		t.Fatal(err)
	}
	r = s.build("-o", "type=local,dest="+filepath.Join(s.dir, "out3"), ctx)
	for name, st := range stepStates(r.out) {
		if !strings.Contains(name, "FROM") && st != "CACHED" {
			t.Errorf("rebuild with a damaged memo: %s is %s, want CACHED\n%s", name, st, r.out)
		}
	}
	if got := readFile(t, filepath.Join(s.dir, "out3", "app")); got != app {
		t.Errorf("/app after the rebuild is %q, want %q", got, app)
	}
}
