package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/testenv"
)

// The fault tests put testenv's proxy between strata and the registry and make the registry fail
// the way real ones do: 5xx answers, reset connections, stalls, corrupt bytes. What must hold: a
// failure that may pass is retried (3 tries); then a cache import failure is a one-line warning
// and the build goes on, a cache export failure fails the build unless ignore-error=true, an
// image push failure always fails it, and bytes that do not match their digest never reach the
// store. After each fault, the same store builds again, correctly, once the registry is healthy.

// faultTimeout makes a stalled registry fail in seconds instead of the default 30s/60s.
var faultTimeout = []string{"STRATA_REGISTRY_TIMEOUT=2s"}

// faultRun runs `strata build --progress=plain ARGS` with the short registry timeout, whatever
// its outcome.
func faultRun(e *env, args ...string) result {
	e.t.Helper()
	return e.runIn("", faultTimeout, append([]string{"build", "--progress=plain"}, args...)...)
}

// faultProject is a small context whose layers no other test has pushed: the file content names
// the test, so every blob is new to the shared registry and an upload cannot be skipped.
func faultProject(t *testing.T, e *env, reg string) (dir, want string) {
	t.Helper()
	want = fmt.Sprintf("%s %d\n", t.Name(), time.Now().UnixNano())
	dir = e.project("app", map[string]string{
		"Dockerfile": "FROM " + reg + "/busybox:latest\n" +
			"COPY a.txt /a.txt\n" +
			"RUN cat /a.txt > /b.txt\n",
		"a.txt": want,
	})
	return dir, want
}

// faultRepo is a repository name for this test alone.
func faultRepo(t *testing.T, suffix string) string {
	return "fault-" + strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), "")) + "-" + suffix
}

// lineWith returns the one output line that starts with prefix, failing the test if there is none.
func lineWith(t *testing.T, r result, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(r.out, "\n") {
		if strings.HasPrefix(l, prefix) {
			t.Log(l)
			return l
		}
	}
	t.Fatalf("no line starting with %q in the output:\n%s", prefix, r.out)
	return ""
}

// checkUsable builds ctx again in e's store with the registry healthy and checks the result: the
// RUN step's output holds the context's file.
func checkUsable(t *testing.T, e *env, p *testenv.Proxy, ctx, want string, args ...string) {
	t.Helper()
	p.ClearFaults()
	dest := filepath.Join(e.dir, fmt.Sprintf("out-%d", time.Now().UnixNano()))
	r := faultRun(e, append(append([]string{}, args...), "-o", "type=local,dest="+dest, ctx)...)
	if r.err != nil {
		t.Fatalf("follow-up build without faults failed: %v\n%s", r.err, r.out)
	}
	if got := readFile(t, filepath.Join(dest, "b.txt")); got != want {
		t.Fatalf("follow-up build: /b.txt is %q, want %q\n%s", got, want, r.out)
	}
	checkStoreBlobs(t, e)
}

// checkStoreBlobs fails the test when a blob in e's store does not hash to its name.
func checkStoreBlobs(t *testing.T, e *env) {
	t.Helper()
	dir := filepath.Join(e.root, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		data, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != ent.Name() {
			t.Errorf("store blob %s holds content with digest sha256:%x", ent.Name(), sum)
		}
	}
}

// exportCache builds ctx in a fresh store, exporting every step to cache, as runner A.
func exportCache(t *testing.T, ctx, cache string) {
	t.Helper()
	a := newEnv(t)
	r := faultRun(a, "--cache-to", "type=registry,ref="+cache+",mode=max", ctx)
	if r.err != nil {
		t.Fatalf("runner A: %v\n%s", r.err, r.out)
	}
}

// requireCached fails the test unless every step but FROM came from the cache.
func requireCached(t *testing.T, r result) {
	t.Helper()
	n := 0
	for name, st := range stepStates(r.out) {
		if strings.Contains(name, "FROM") {
			continue
		}
		n++
		if st != "CACHED" {
			t.Errorf("%s is %s, want CACHED\n%s", name, st, r.out)
		}
	}
	if n == 0 {
		t.Errorf("no steps in the output\n%s", r.out)
	}
}

// requireRan fails the test unless the COPY and RUN steps ran (missed every cache).
func requireRan(t *testing.T, r result) {
	t.Helper()
	got := strings.Join(missed(r.out), "|")
	if !strings.Contains(got, "COPY a.txt") || !strings.Contains(got, "RUN cat") {
		t.Errorf("steps that ran: %q, want COPY and RUN\n%s", got, r.out)
	}
}

// Two 503s on the cache manifest are retried away: the third try imports the cache.
func TestFaultCacheManifest503Retried(t *testing.T) {
	p, reg := cacheProxy(t)
	cache := reg + "/" + faultRepo(t, "cache") + ":cache"
	src := newEnv(t)
	ctx, want := faultProject(t, src, reg)
	exportCache(t, ctx, cache)

	b := newEnv(t)
	p.Inject(testenv.Fault{Method: "GET", Path: regexp.MustCompile(`^/v2/` + faultRepo(t, "cache") + `/manifests/cache$`), Times: 2, Status: 503})
	p.Reset()
	r := faultRun(b, "--cache-from", cache, ctx)
	if r.err != nil {
		t.Fatalf("build: %v\n%s", r.err, r.out)
	}
	if r.has("WARNING") {
		t.Errorf("a cache that answered on the third try still warned:\n%s", r.out)
	}
	requireCached(t, r)
	if s := p.Stats(); s.ManifestGets < 3 {
		t.Errorf("%d manifest GETs; the two 503s were not retried?", s.ManifestGets)
	}
	checkUsable(t, b, p, ctx, want)
}

// A cache manifest that always answers 503 is a one-line warning after 3 tries; the build runs
// its steps and succeeds.
func TestFaultCacheManifest503Forever(t *testing.T) {
	p, reg := cacheProxy(t)
	repo := faultRepo(t, "cache")
	cache := reg + "/" + repo + ":cache"
	e := newEnv(t)
	ctx, want := faultProject(t, e, reg)
	p.Inject(testenv.Fault{Method: "GET", Path: regexp.MustCompile(`^/v2/` + repo + `/manifests/cache$`), Status: 503})
	r := faultRun(e, "--cache-from", cache, ctx)
	if r.err != nil {
		t.Fatalf("build failed on a cache import error: %v\n%s", r.err, r.out)
	}
	line := lineWith(t, r, "WARNING: cache "+cache+" not imported: ")
	if want := "WARNING: cache " + cache + " not imported: registry returned 503 Service Unavailable: testenv proxy: injected fault (after 3 tries)"; line != want {
		t.Errorf("warning:\n got %s\nwant %s", line, want)
	}
	requireRan(t, r)
	checkUsable(t, e, p, ctx, want, "--cache-from", cache)
}

// A registry that stalls on the cache manifest costs a few timeouts, not the build: with
// STRATA_REGISTRY_TIMEOUT=2s the warning comes after 3 tries and the build finishes in seconds.
func TestFaultCacheManifestStall(t *testing.T) {
	p, reg := cacheProxy(t)
	repo := faultRepo(t, "cache")
	cache := reg + "/" + repo + ":cache"
	e := newEnv(t)
	ctx, want := faultProject(t, e, reg)
	p.Inject(testenv.Fault{Method: "GET", Path: regexp.MustCompile(`^/v2/` + repo + `/manifests/cache$`), Stall: 5 * time.Minute})
	start := time.Now()
	r := faultRun(e, "--cache-from", cache, ctx)
	took := time.Since(start)
	if r.err != nil {
		t.Fatalf("build failed on a stalled cache import: %v\n%s", r.err, r.out)
	}
	line := lineWith(t, r, "WARNING: cache "+cache+" not imported: ")
	if want := "WARNING: cache " + cache + " not imported: registry timed out: no response to GET " + reg + "/v2/" + repo + "/manifests/cache within 2s (after 3 tries)"; line != want {
		t.Errorf("warning:\n got %s\nwant %s", line, want)
	}
	requireRan(t, r)
	if took > 30*time.Second {
		t.Errorf("build took %s against a stalled registry with a 2s timeout", took)
	}
	checkUsable(t, e, p, ctx, want)
}

// uploadFault resets every connection that starts or continues a blob upload to repo.
func uploadFault(repo string, times int) testenv.Fault {
	return testenv.Fault{Path: regexp.MustCompile(`^/v2/` + repo + `/blobs/uploads/`), Times: times, Reset: true}
}

// Resets on blob uploads during a cache export are retried; the exported cache is complete.
func TestFaultCacheUploadResetRetried(t *testing.T) {
	for _, times := range []int{1, 2} {
		t.Run(fmt.Sprint(times), func(t *testing.T) {
			p, reg := cacheProxy(t)
			repo := faultRepo(t, "cache")
			cache := reg + "/" + repo + ":cache"
			a := newEnv(t)
			ctx, want := faultProject(t, a, reg)
			p.Inject(uploadFault(repo, times))
			r := faultRun(a, "--cache-to", "type=registry,ref="+cache+",mode=max", ctx)
			if r.err != nil {
				t.Fatalf("cache export with %d reset(s): %v\n%s", times, r.err, r.out)
			}
			if r.has("WARNING") {
				t.Errorf("warned:\n%s", r.out)
			}
			// The export is whole: another runner gets every step from it.
			b := newEnv(t)
			r = faultRun(b, "--cache-from", cache, ctx)
			if r.err != nil {
				t.Fatalf("runner B: %v\n%s", r.err, r.out)
			}
			requireCached(t, r)
			checkUsable(t, b, p, ctx, want)
		})
	}
}

// Uploads that always fail fail the build with the cache export's one-line cause; with
// ignore-error=true the same failure is a warning and the image output is still written.
func TestFaultCacheUploadResetForever(t *testing.T) {
	p, reg := cacheProxy(t)
	repo := faultRepo(t, "cache")
	cache := reg + "/" + repo + ":cache"
	e := newEnv(t)
	ctx, want := faultProject(t, e, reg)
	p.Inject(uploadFault(repo, 0))
	spec := "type=registry,ref=" + cache + ",mode=max"
	r := faultRun(e, "--cache-to", spec, ctx)
	if r.err == nil || r.code == 0 {
		t.Fatalf("build succeeded although its cache export failed:\n%s", r.out)
	}
	line := lineWith(t, r, "ERROR: --cache-to ")
	causeRe := regexp.MustCompile(`^ERROR: --cache-to ` + regexp.QuoteMeta(cache) + `: push ` + regexp.QuoteMeta(cache) +
		`: blob sha256:[0-9a-f]{64}: registry unreachable: (POST|PATCH|PUT) ` + regexp.QuoteMeta(reg) + `/v2/` + repo +
		`/blobs/uploads/\S*: (connection reset by peer|connection closed by the registry[^:]*) \(after 3 tries\)$`)
	if !causeRe.MatchString(line) {
		t.Errorf("error line %q does not match %s", line, causeRe)
	}
	checkUsable(t, e, p, ctx, want)

	t.Run("ignore-error", func(t *testing.T) {
		e := newEnv(t)
		ctx, want := faultProject(t, e, reg)
		p.Inject(uploadFault(repo, 0))
		spec := spec + ",ignore-error=true"
		oci := filepath.Join(e.dir, "image.tar")
		r := faultRun(e, "--cache-to", spec, "-o", "type=oci,dest="+oci, ctx)
		if r.err != nil {
			t.Fatalf("build failed although ignore-error=true: %v\n%s", r.err, r.out)
		}
		line := lineWith(t, r, "WARNING: --cache-to ")
		if !regexp.MustCompile(`^WARNING: --cache-to ` + regexp.QuoteMeta(cache) + `: push ` + regexp.QuoteMeta(cache) +
			`: blob sha256:[0-9a-f]{64}: registry unreachable: [A-Z]+ \S+: [^:]+ \(after 3 tries\)$`).MatchString(line) {
			t.Errorf("warning line: %s", line)
		}
		if st, err := os.Stat(oci); err != nil || st.Size() == 0 {
			t.Errorf("image output not written: %v", err)
		}
		checkUsable(t, e, p, ctx, want)
	})
}

// A failed image push fails the build, whatever ignore-error says about the cache.
func TestFaultImagePushFails(t *testing.T) {
	p, reg := cacheProxy(t)
	imgRepo := faultRepo(t, "img")
	img := reg + "/" + imgRepo + ":1"
	cache := reg + "/" + faultRepo(t, "cache") + ":cache"
	e := newEnv(t)
	ctx, want := faultProject(t, e, reg)
	p.Inject(testenv.Fault{Method: "PUT", Path: regexp.MustCompile(`^/v2/` + imgRepo + `/manifests/`), Status: 500})
	args := []string{"--cache-to", "type=registry,ref=" + cache + ",ignore-error=true", "--output", "type=image", "--push", "-t", img}
	r := faultRun(e, append(args, ctx)...)
	if r.err == nil || r.code == 0 {
		t.Fatalf("build succeeded although its image push failed:\n%s", r.out)
	}
	line := lineWith(t, r, "ERROR: ")
	if want := "ERROR: output type=registry: push " + img + ": registry returned 500 Internal Server Error: testenv proxy: injected fault (after 3 tries)"; line != want {
		t.Errorf("error:\n got %s\nwant %s", line, want)
	}
	p.ClearFaults()
	if r := faultRun(e, append(args, ctx)...); r.err != nil {
		t.Fatalf("push without faults: %v\n%s", r.err, r.out)
	}
	if out, err := testenv.SkopeoOutput("inspect", "--tls-verify=false", "docker://"+img); err != nil {
		t.Errorf("image not in the registry after the retry: %v\n%s", err, out)
	}
	checkUsable(t, e, p, ctx, want)
}

// A lazily imported layer whose bytes arrive corrupt fails the build that needs them, naming the
// digest; nothing with wrong content enters the store, and the next try, healthy, succeeds.
func TestFaultCorruptLazyBlob(t *testing.T) {
	p, reg := cacheProxy(t)
	repo := faultRepo(t, "cache")
	cache := reg + "/" + repo + ":cache"
	src := newEnv(t)
	ctx, want := faultProject(t, src, reg)
	exportCache(t, ctx, cache)

	// Runner B imports the cache: every step cached, no layer fetched yet.
	b := newEnv(t)
	r := faultRun(b, "--cache-from", cache, ctx)
	if r.err != nil {
		t.Fatalf("runner B: %v\n%s", r.err, r.out)
	}
	requireCached(t, r)

	// An OCI archive needs every layer's bytes; the cache repository now corrupts them.
	p.Inject(testenv.Fault{Method: "GET", Path: regexp.MustCompile(`^/v2/` + repo + `/blobs/sha256:`), CorruptBody: true})
	oci := filepath.Join(b.dir, "image.tar")
	r = faultRun(b, "--cache-from", cache, "-o", "type=oci,dest="+oci, ctx)
	if r.err == nil || r.code == 0 {
		t.Fatalf("build succeeded with a corrupt layer:\n%s", r.out)
	}
	line := lineWith(t, r, "ERROR: ")
	m := regexp.MustCompile(`^ERROR: output type=oci: fetch from ` + regexp.QuoteMeta(reg+"/"+repo) +
		`: blob sha256:([0-9a-f]{64}): content does not match its digest \(registry sent sha256:[0-9a-f]{64}\)$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("error line does not name the digest mismatch: %s", line)
	}
	if _, err := os.Stat(filepath.Join(b.root, "blobs", "sha256", m[1])); err == nil {
		t.Errorf("the store holds blob %s after its fetch failed", m[1])
	}
	checkStoreBlobs(t, b)

	p.ClearFaults()
	r = faultRun(b, "--cache-from", cache, "-o", "type=oci,dest="+oci, ctx)
	if r.err != nil {
		t.Fatalf("retry without the fault: %v\n%s", r.err, r.out)
	}
	if _, err := os.Stat(filepath.Join(b.root, "blobs", "sha256", m[1])); err != nil {
		t.Errorf("blob %s not in the store after a good fetch: %v", m[1], err)
	}
	checkUsable(t, b, p, ctx, want)
}

// A registry's garbage collection deletes a cache's layers after the cache was exported. A
// runner that imports the cache, and one that adopted its records lazily before the deletion,
// must not fail (or loop) on the missing blobs: each is forgotten, with a warning naming it, the
// steps that made it run again, and the store stays consistent.
func TestFaultLazyBlobDeleted(t *testing.T) {
	p, reg := cacheProxy(t)
	repo := faultRepo(t, "cache")
	cache := reg + "/" + repo + ":cache"
	src := newEnv(t)
	ctx, want := faultProject(t, src, reg)
	exportCache(t, ctx, cache)

	// Runner C adopts every record lazily before the deletion: an image-only build moves no
	// layer bytes.
	c := newEnv(t)
	if r := faultRun(c, "--cache-from", cache, ctx); r.err != nil {
		t.Fatalf("runner C before the deletion: %v\n%s", r.err, r.out)
	} else {
		requireCached(t, r)
	}

	// Delete every layer the cache's manifest lists from its repository (the base image's
	// layers live in busybox's repository and are not listed here).
	raw, err := testenv.SkopeoOutput("inspect", "--raw", "--tls-verify=false", "docker://"+cache)
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Layers []struct{ Digest string } }
	if err := json.Unmarshal(raw, &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("cache manifest %s: %v", raw, err)
	}
	for _, l := range m.Layers {
		req, _ := http.NewRequest(http.MethodDelete, "http://"+testReg.Addr()+"/v2/"+repo+"/blobs/"+l.Digest, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("DELETE blob %s: %s", l.Digest, resp.Status)
		}
	}

	// A new step needs the deleted layers' files.
	df := readFile(t, filepath.Join(ctx, "Dockerfile")) + "RUN cat /b.txt > /c.txt\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	gone := regexp.MustCompile(`WARNING: cache blob (sha256:[0-9a-f]{64}) is gone from ` + regexp.QuoteMeta(reg+"/"+repo) +
		` \(deleted since the cache was exported\): running again the steps that made it`)
	check := func(name string, e *env, args ...string) {
		t.Helper()
		p.Reset()
		dest := filepath.Join(e.dir, "out-"+name)
		r := faultRun(e, append(args, "-o", "type=local,dest="+dest, ctx)...)
		if r.err != nil {
			t.Fatalf("%s: the build failed although every deleted layer can be made again: %v\n%s", name, r.err, r.out)
		}
		ws := gone.FindAllStringSubmatch(r.out, -1)
		if len(ws) == 0 || len(ws) > len(m.Layers) {
			t.Errorf("%s: %d warnings naming a gone blob, want 1 to %d:\n%s", name, len(ws), len(m.Layers), r.out)
		}
		seen := map[string]bool{}
		for _, w := range ws {
			if seen[w[1]] {
				t.Errorf("%s: blob %s forgotten twice", name, w[1])
			}
			seen[w[1]] = true
		}
		if got := readFile(t, filepath.Join(dest, "c.txt")); got != want {
			t.Errorf("%s: /c.txt = %q, want %q", name, got, want)
		}
		// A 404 is final: each deleted blob is asked for at most twice (go-containerregistry's own
		// fallback) per attempt, never the three tries of a transient error.
		if s, limit := p.Stats(), (2*len(m.Layers)+1)*(len(ws)+1); s.BlobGets > limit {
			t.Errorf("%s: %d blob GETs, want at most %d: a 404 must not be retried", name, s.BlobGets, limit)
		}
		if r := e.run("store", "verify"); r.err != nil || !strings.HasSuffix(strings.TrimSpace(r.out), ": ok") {
			t.Errorf("%s: store verify after the build: %v\n%s", name, r.err, r.out)
		}
		// The steps made again are in the store now: the next build needs no cache.
		again := faultRun(e, ctx)
		if again.err != nil || gone.MatchString(again.out) {
			t.Fatalf("%s: build after the recovery: %v\n%s", name, again.err, again.out)
		}
		requireCached(t, again)
	}
	// Runner B imports the cache now; runner C builds from what it adopted, with no --cache-from.
	check("runner B", newEnv(t), "--cache-from", cache)
	check("runner C", c)
}
