package main

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
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
