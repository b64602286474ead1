package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/testenv"
)

// cacheProxy puts a counting proxy in front of the test registry and copies busybox behind a name
// reached through it, so every byte a runner moves is counted.
func cacheProxy(t *testing.T) (*testenv.Proxy, string) {
	t.Helper()
	p, err := testenv.StartProxy(testReg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, p.Addr()
}

// bigFile is incompressible, so a layer holding it cannot hide in the counters' noise.
func bigFile(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return string(b)
}

func metadata(t *testing.T, path string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(readFile(t, path)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The CI workflow: runner A builds and pushes with a registry cache; runner B, with an
// empty store, gets every step from the cache, pushes the same digest and moves no layer bytes.
// Runner C, after a source edit, re-runs only what reads it and uploads only the new layers.
func TestRegistryCacheAcrossRunners(t *testing.T) {
	proxy, reg := cacheProxy(t)
	a := newEnv(t)
	files := map[string]string{
		"Dockerfile": "FROM " + reg + "/busybox:latest\n" +
			"COPY big.bin /data/big.bin\n" +
			"RUN head -c 300000 /data/big.bin > /data/derived.bin\n" +
			"COPY src/ /src/\n" +
			"RUN cat /src/main.txt > /out.txt\n" +
			"ENV X=1\n",
		"big.bin":      bigFile(t, 1<<20),
		"src/main.txt": "v1\n",
	}
	ctxA := a.project("app", files)
	cache := reg + "/app:cache"
	args := func(e *env, ctx, tag string) []string {
		return []string{"--cache-from", cache, "--cache-to", "type=registry,ref=" + cache + ",mode=max",
			"--output", "type=image,oci-mediatypes=true", "--push", "-t", reg + "/app:" + tag,
			"--metadata-file", filepath.Join(e.dir, tag+".json"), ctx}
	}
	r := a.build(args(a, ctxA, "1")...)
	if !r.has("WARNING: cache " + cache + " not imported: not found") {
		t.Errorf("first build: no one-line warning for the missing cache\n%s", r.out)
	}
	digestA := metadata(t, filepath.Join(a.dir, "1.json"))["containerimage.digest"]

	// Runner B: a fresh store and a fresh checkout of the same sources.
	b := newEnv(t)
	ctxB := b.project("app", files)
	proxy.Reset()
	r = b.build(args(b, ctxB, "2")...)
	for name, st := range stepStates(r.out) {
		if strings.Contains(name, "FROM") {
			continue
		}
		if st != "CACHED" {
			t.Errorf("runner B: %s is %s, want CACHED\n%s", name, st, r.out)
		}
	}
	mdB := metadata(t, filepath.Join(b.dir, "2.json"))
	if mdB["containerimage.digest"] != digestA {
		t.Errorf("runner B pushed %v, runner A %v", mdB["containerimage.digest"], digestA)
	}
	s := proxy.Stats()
	// Manifests and small configs move; no layer does (the smallest layer here is the 1 MiB one).
	if s.BlobBytesDown > 64<<10 || s.BlobBytesUp != 0 {
		t.Errorf("runner B moved %d bytes down and %d up through the registry; want no layer bytes\n%+v", s.BlobBytesDown, s.BlobBytesUp, s)
	}
	// B keeps the image lazily: its layers are known, their bytes still only in the registry.
	if im := b.run("images"); !regexp.MustCompile(`app:2 .* [1-9]\d* of [1-9]\d* layers`).MatchString(im.out) {
		t.Errorf("strata images should show runner B's image as lazy:\n%s", im.out)
	}
	if !r.has("pushed 0B") {
		t.Errorf("progress should show runner B pushed nothing\n%s", r.out)
	}
	if mdB["strata.bytes.pushed"].(float64) != 0 {
		t.Errorf("metadata says %v bytes pushed, want 0", mdB["strata.bytes.pushed"])
	}

	// Runner C: one source edit, an empty store.
	c := newEnv(t)
	files["src/main.txt"] = "v2\n"
	ctxC := c.project("app", files)
	proxy.Reset()
	r = c.build(args(c, ctxC, "3")...)
	got := missed(r.out)
	if len(got) != 2 || !strings.Contains(strings.Join(got, "|"), "COPY src/") || !strings.Contains(strings.Join(got, "|"), "RUN cat") {
		t.Errorf("runner C re-ran %v, want only COPY src/ and RUN cat\n%s", got, r.out)
	}
	// C has no local history, yet it says what changed: the cache carries each step's inputs.
	if why := missReason(r.out, "COPY src/"); !strings.Contains(why, "main.txt changed") {
		t.Errorf("runner C's miss reason for COPY src/ is %q, want it to name main.txt\n%s", why, r.out)
	}
	s = proxy.Stats()
	if s.BlobBytesUp == 0 || s.BlobBytesUp > 64<<10 {
		t.Errorf("runner C uploaded %d bytes; want only the two small new layers and configs\n%+v", s.BlobBytesUp, s)
	}
	// C ran a RUN on top of the big layers, so it had to fetch them: that is the lazy fetch.
	if s.BlobBytesDown < 1<<20 {
		t.Errorf("runner C downloaded only %d bytes but ran a step on the cached layers", s.BlobBytesDown)
	}

	// Runner A's own store still answers from itself; the cache now has C's records too (last
	// writer wins: C's export replaced the manifest, and B's image still pulls fine).
	out, err := testenv.SkopeoOutput("inspect", "--tls-verify=false", "--raw", "docker://"+cache)
	if err != nil {
		t.Fatalf("skopeo inspect --raw: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `"artifactType":"application/vnd.strata.cache.v1"`) {
		t.Errorf("cache manifest lacks the artifactType:\n%s", out)
	}
	if out, err := testenv.SkopeoOutput("inspect", "--tls-verify=false", "docker://"+cache); err != nil {
		t.Errorf("skopeo inspect rejects the cache artifact: %v\n%s", err, out)
	}
	if err := testenv.Skopeo("copy", "--src-tls-verify=false", "docker://"+reg+"/app:2", "oci:"+filepath.Join(b.dir, "pulled")); err != nil {
		t.Errorf("skopeo cannot pull runner B's image: %v", err)
	}
	_ = os.Remove
}

func simpleProject(reg, marker string) map[string]string {
	return map[string]string{
		"Dockerfile": "FROM " + reg + "/busybox:latest AS base\n" +
			"COPY big.bin /big.bin\n" +
			"FROM base\n" +
			"COPY src/ /src/\n" +
			"RUN cat /src/main.txt > /out.txt && echo ran-" + marker + "\n",
		"src/main.txt": "hello " + marker + "\n",
	}
}

// type=local writes an OCI layout directory; a runner with an empty store reads it back and gets
// every step, with the same image digest.
func TestLocalCacheAcrossRunners(t *testing.T) {
	_, reg := cacheProxy(t)
	files := simpleProject(reg, "x")
	files["big.bin"] = bigFile(t, 256<<10)
	cacheDir := filepath.Join(t.TempDir(), "cache")
	a := newEnv(t)
	a.build("--cache-to", "type=local,dest="+cacheDir+",mode=max", "--iidfile", filepath.Join(a.dir, "iid"), a.project("app", files))
	if out, err := testenv.SkopeoOutput("inspect", "oci:"+cacheDir+":latest"); err != nil {
		t.Errorf("skopeo inspect oci:%s: %v\n%s", cacheDir, err, out)
	}
	b := newEnv(t)
	r := b.build("--cache-from", "type=local,src="+cacheDir, "--iidfile", filepath.Join(b.dir, "iid"),
		"-o", "type=oci,dest="+filepath.Join(b.dir, "b.tar"), b.project("app", files))
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("runner B missed %v\n%s", m, r.out)
	}
	if readFile(t, filepath.Join(a.dir, "iid")) != readFile(t, filepath.Join(b.dir, "iid")) {
		t.Errorf("runner B built another image than runner A")
	}
	// The archive needed the layers' bytes: they came from the cache directory, verified.
	if err := testenv.Skopeo("inspect", "oci-archive:"+filepath.Join(b.dir, "b.tar")); err != nil {
		t.Errorf("runner B's archive: %v", err)
	}
	// A runner that imports from a directory can still push and export to a registry: the layers
	// known only from the directory are read from it.
	c := newEnv(t)
	r = c.build("--cache-from", "type=local,src="+cacheDir, "--cache-to", "type=registry,ref="+reg+"/fromdir:cache,mode=max",
		"--push", "-t", reg+"/fromdir:1", c.project("app", files))
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("runner C missed %v\n%s", m, r.out)
	}
	if err := testenv.Skopeo("copy", "--src-tls-verify=false", "docker://"+reg+"/fromdir:1", "oci:"+filepath.Join(c.dir, "img")); err != nil {
		t.Errorf("runner C's pushed image is incomplete: %v", err)
	}
	if err := testenv.Skopeo("copy", "--src-tls-verify=false", "docker://"+reg+"/fromdir:cache", "oci:"+filepath.Join(c.dir, "cache")); err != nil {
		t.Errorf("runner C's registry cache is incomplete: %v", err)
	}
}

// type=inline puts the image's own records in its config; --cache-from IMAGE reads them back.
func TestInlineCache(t *testing.T) {
	proxy, reg := cacheProxy(t)
	files := simpleProject(reg, "inline")
	files["big.bin"] = bigFile(t, 256<<10)
	a := newEnv(t)
	a.build("--cache-to", "type=inline", "--push", "-t", reg+"/inline:1", "--iidfile", filepath.Join(a.dir, "iid"), a.project("app", files))
	cfg, err := testenv.SkopeoOutput("inspect", "--tls-verify=false", "--config", "--raw", "docker://"+reg+"/inline:1")
	if err != nil || !strings.Contains(string(cfg), `"strata.cache.v1"`) {
		t.Fatalf("pushed config has no inline cache (%v):\n%s", err, cfg)
	}
	b := newEnv(t)
	proxy.Reset()
	r := b.build("--cache-from", reg+"/inline:1", "--cache-to", "type=inline", "--push", "-t", reg+"/inline:2",
		"--iidfile", filepath.Join(b.dir, "iid"), b.project("app", files))
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("runner B missed %v\n%s", m, r.out)
	}
	if readFile(t, filepath.Join(a.dir, "iid")) != readFile(t, filepath.Join(b.dir, "iid")) {
		t.Errorf("runner B built another image than runner A")
	}
	if s := proxy.Stats(); s.BlobBytesUp != 0 || s.BlobBytesDown > 64<<10 {
		t.Errorf("runner B moved layer bytes: %+v", s)
	}
}

// Several --cache-from refs are searched in order: a branch cache that does not exist yet is a
// warning, and main's cache answers.
func TestCacheFromSearchedInOrder(t *testing.T) {
	_, reg := cacheProxy(t)
	files := simpleProject(reg, "order")
	files["big.bin"] = "small\n"
	a := newEnv(t)
	a.build("--cache-to", "type=registry,ref="+reg+"/order:cache-main", a.project("app", files))
	b := newEnv(t)
	r := b.build("--cache-from", "type=registry,ref="+reg+"/order:cache-feature", "--cache-from", reg+"/order:cache-main", b.project("app", files))
	if !r.has("WARNING: cache " + reg + "/order:cache-feature not imported") {
		t.Errorf("no warning for the missing branch cache\n%s", r.out)
	}
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("main's cache should answer every step (mode=min covers the image's stages); missed %v\n%s", m, r.out)
	}
}

// Runners exporting to one ref at the same time leave a valid cache: every blob the manifest
// names is there (skopeo copies the whole artifact) and a new runner builds correctly from it.
func TestConcurrentRunnersShareOneCache(t *testing.T) {
	_, reg := cacheProxy(t)
	cache := reg + "/shared:cache"
	const n = 3
	errs := make(chan string, n)
	for i := range n {
		go func() {
			e := newEnv(t)
			files := simpleProject(reg, fmt.Sprint("runner", i))
			files["big.bin"] = bigFile(t, 128<<10)
			r := e.run("build", "--progress=plain", "--cache-from", cache, "--cache-to", "type=registry,ref="+cache+",mode=max",
				"--push", "-t", fmt.Sprintf("%s/shared:r%d", reg, i), e.project("app", files))
			if r.err != nil {
				errs <- fmt.Sprintf("runner %d: %v\n%s", i, r.err, r.out)
				return
			}
			errs <- ""
		}()
	}
	for range n {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
	out := filepath.Join(t.TempDir(), "copy")
	if err := testenv.Skopeo("copy", "--src-tls-verify=false", "docker://"+cache, "oci:"+out); err != nil {
		t.Fatalf("the shared cache is not a complete artifact: %v", err)
	}
	// Whichever runner wrote last, its records must serve a runner building its sources.
	z := newEnv(t)
	r := z.build("--cache-from", cache, "-o", "type=local,dest="+filepath.Join(z.dir, "fs"), z.project("app", simpleProjectWithBig(reg)))
	if got := readFile(t, filepath.Join(z.dir, "fs", "out.txt")); got != "hello z\n" {
		t.Errorf("runner Z built %q\n%s", got, r.out)
	}
}

func simpleProjectWithBig(reg string) map[string]string {
	f := simpleProject(reg, "z")
	f["big.bin"] = "z\n"
	return f
}
