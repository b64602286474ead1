package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/store"
)

// Store lifecycle end to end: automatic GC after builds, prune filters, du --verbose, and prune
// never running beside a build.

// storeTotal is the store's size as GC measures it (what `strata du` prints as TOTAL).
func storeTotal(t *testing.T, root string) int64 {
	t.Helper()
	s, err := store.Open(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := s.TotalUsage()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// randomText is n random bytes: incompressible, so a layer blob is as big as its files.
func randomText(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gcProject makes the i-th project of the GC test: three shapes, each with fresh random files of
// about 100 KB, so every project adds new layers (~100-300 KB of blobs, as much again unpacked).
func gcProject(e *env, i int) string {
	t := e.t
	name := fmt.Sprintf("gc%02d", i)
	var files map[string]string
	switch i % 3 {
	case 0: // two COPY layers
		files = map[string]string{
			"Dockerfile": "FROM {{BASE}}\nCOPY a.bin /a.bin\nCOPY b.bin /b.bin\n",
			"a.bin":      randomText(t, 60_000),
			"b.bin":      randomText(t, 60_000),
		}
	case 1: // multi-stage: a RUN that reads the file, COPY --from
		files = map[string]string{
			"Dockerfile": "FROM {{BASE}} AS gen\nCOPY a.bin /a.bin\nRUN cat /a.bin /a.bin > /c.bin\n" +
				"FROM {{BASE}}\nCOPY --from=gen /c.bin /c.bin\nCMD [\"cat\", \"/c.bin\"]\n",
			"a.bin": randomText(t, 40_000),
		}
	default: // whole-context COPY, ENV, a small RUN
		files = map[string]string{
			"Dockerfile": fmt.Sprintf("FROM {{BASE}}\nENV N=%d\nCOPY . /ctx\nRUN echo $N > /n.txt\n", i),
			"x/1.bin":    randomText(t, 50_000),
			"x/2.bin":    randomText(t, 50_000),
		}
	}
	return e.project(name, files)
}

func allCached(t *testing.T, out string) {
	t.Helper()
	for name, st := range stepStates(out) {
		if st != "CACHED" {
			t.Errorf("step %q: %s, want CACHED\n%s", name, st, out)
		}
	}
}

func TestGCKeepsStoreUnderLimitAcrossBuilds(t *testing.T) {
	e := newEnv(t)
	// What every build needs anyway: the base image, pulled once.
	// (A COPY makes the build unpack the base layer, as every later build does.)
	e.build("--gc-keep-storage", "off", e.project("base", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY w.txt /w.txt\n", "w.txt": "w\n"}))
	base := storeTotal(t, e.root)
	// Room for the base, the build in progress (≤ 0.4 MB of blobs and snapshots), the image
	// tagged by the previous build (as much again) and about one earlier build's cache.
	limit := base + 1280<<10
	flag := fmt.Sprint(limit)
	t.Logf("base %d bytes, limit %d", base, limit)

	var ctxs []string
	gcRan := false
	for i := 0; i < 30; i++ {
		ctx := gcProject(e, i)
		ctxs = append(ctxs, ctx)
		args := []string{"--gc-keep-storage", flag}
		if i%2 == 0 {
			args = append(args, "-t", "gc:latest") // re-tagging un-pins the previous image
		}
		r := e.build(append(args, ctx)...)
		gcRan = gcRan || r.has("gc: store was")
		if n := storeTotal(t, e.root); n > limit {
			t.Fatalf("build %d: store is %d bytes, limit %d\n%s\n%s", i, n, limit, r.out, e.run("du", "--verbose").out)
		}
		if i%5 == 4 {
			// The project just built is still fully cached.
			allCached(t, e.build("--gc-keep-storage", flag, ctx).out)
		}
		if i == 10 || i == 20 || i == 29 {
			// An early project still builds (its cache is long gone: misses are fine) and its result
			// is right.
			dest := filepath.Join(e.dir, fmt.Sprintf("early-%d", i))
			r := e.build("--gc-keep-storage", flag, "-o", "type=local,dest="+dest, ctxs[0])
			if len(missed(r.out)) == 0 {
				t.Errorf("rebuild of project 0 after %d builds was fully cached: GC evicted nothing?\n%s\n%s", i, r.out, e.run("du", "-v").out)
			}
			if got, want := readFile(t, filepath.Join(dest, "a.bin")), readFile(t, filepath.Join(ctxs[0], "a.bin")); got != want {
				t.Errorf("rebuilt project 0 has the wrong a.bin")
			}
			if n := storeTotal(t, e.root); n > limit {
				t.Fatalf("after rebuilding project 0: store is %d bytes, limit %d", n, limit)
			}
		}
	}
	if !gcRan {
		t.Error("automatic GC never reported running")
	}
	// The tagged image survives every GC and still exports.
	r := e.run("images")
	if !strings.Contains(r.out, "gc:latest") {
		t.Errorf("tagged image lost:\n%s", r.out)
	}
	// Tagged image, base image and cache records show in du --verbose with their reason.
	du := e.run("du", "--verbose")
	for _, want := range []string{store.KindImage, store.KindBase, store.KindRecord} {
		if !inventoryHas(du.out, want) {
			t.Errorf("du --verbose lists no %s:\n%s", want, du.out)
		}
	}
	for _, want := range []string{"TOTAL", "GC LIMIT", "docker.io/library/gc:latest"} {
		if !strings.Contains(du.out, want) {
			t.Errorf("du --verbose lacks %q:\n%s", want, du.out)
		}
	}
}

func TestGCLimitFromConfigFile(t *testing.T) {
	e := newEnv(t)
	cfg := filepath.Join(e.dir, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"gc-keep-storage": "1KB"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	envs := []string{"STRATA_CONFIG=" + cfg}
	old := e.project("old", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY a.bin /a.bin\n", "a.bin": randomText(t, 30_000)})
	cur := e.project("cur", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY b.bin /b.bin\n", "b.bin": randomText(t, 30_000)})
	r := e.runIn("", envs, "build", "--progress=plain", old)
	if r.err != nil {
		t.Fatal(r.out)
	}
	r = e.runIn("", envs, "build", "--progress=plain", cur)
	if r.err != nil || !r.has("gc: store was") {
		t.Fatalf("no GC with a 1KB limit from the config file: %v\n%s", r.err, r.out)
	}
	// Over the limit however hard GC tries: only what this build used is left, and it is cached.
	allCached(t, e.runIn("", envs, "build", "--progress=plain", cur).out)
	r = e.runIn("", envs, "build", "--progress=plain", old)
	if r.err != nil || len(missed(r.out)) == 0 {
		t.Errorf("old project still cached under a 1KB limit:\n%s", r.out)
	}
	if du := e.runIn("", envs, "du"); !strings.Contains(du.out, "1.0KiB (") {
		t.Errorf("du does not show the configured limit:\n%s", du.out)
	}
	// The flag wins over the config file; "off" disables GC.
	r = e.runIn("", envs, "build", "--progress=plain", "--gc-keep-storage", "off", cur)
	if r.err != nil || r.has("gc: ") {
		t.Errorf("--gc-keep-storage off: %v\n%s", r.err, r.out)
	}
	if r := e.run("build", "--gc-keep-storage", "lots", cur); r.err == nil || !strings.Contains(r.out, "invalid size") {
		t.Errorf("bad --gc-keep-storage accepted: %s", r.out)
	}
}

// inventoryHas reports whether du --verbose lists an entry of kind.
func inventoryHas(out, kind string) bool {
	return regexp.MustCompile(`(?m)^` + kind + `\s+[0-9a-f]{12}\s`).MatchString(out)
}

// ageRecords sets the last use of every cache record whose step contains substr.
func ageRecords(t *testing.T, root, substr string, age time.Duration) int {
	t.Helper()
	s, err := store.Open(root, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	when := time.Now().Add(-age)
	for _, r := range recs {
		if strings.Contains(r.Step, substr) {
			if err := os.Chtimes(filepath.Join(root, "cache", r.Key+".json"), when, when); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no record for %q", substr)
	}
	return n
}

func TestPruneFilterUntilAndKeepStorage(t *testing.T) {
	e := newEnv(t)
	oldCtx := e.project("old", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY old.bin /old.bin\n", "old.bin": randomText(t, 50_000)})
	newCtx := e.project("new", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY new.bin /new.bin\n", "new.bin": randomText(t, 50_000)})
	e.build(oldCtx)
	e.build(newCtx)
	ageRecords(t, e.root, "COPY old.bin", 48*time.Hour)

	du := e.run("du", "--verbose")
	if !strings.Contains(du.out, "COPY old.bin") || !strings.Contains(du.out, "COPY new.bin") || !inventoryHas(du.out, store.KindBase) {
		t.Errorf("du --verbose:\n%s", du.out)
	}
	if r := e.run("prune", "--filter", "until=24h"); r.err != nil || !strings.Contains(r.out, "Removed 1 cache record\n") {
		t.Fatalf("prune --filter until=24h: %v\n%s", r.err, r.out)
	}
	allCached(t, e.build(newCtx).out)
	r := e.build(oldCtx)
	if st := stepStates(r.out)["[2/2] COPY old.bin /old.bin"]; st != "MISS" {
		t.Errorf("record unused for 48h survived until=24h: %s\n%s", st, r.out)
	}

	// A keep-storage bigger than the store removes no cache (only unreferenced content: the
	// untagged build results).
	if r := e.run("prune", "--keep-storage", "10GB"); r.err != nil || strings.Contains(r.out, "Removed") {
		t.Errorf("prune --keep-storage 10GB: %v\n%s", r.err, r.out)
	}
	// keep-storage: just under the current size drops the least recently used record only.
	ageRecords(t, e.root, "COPY new.bin", time.Hour)
	total := storeTotal(t, e.root)
	if r := e.run("prune", "--keep-storage", fmt.Sprint(total-1)); r.err != nil || !strings.Contains(r.out, "Removed 1 cache record\n") {
		t.Fatalf("prune --keep-storage: %v\n%s", r.err, r.out)
	}
	if n := storeTotal(t, e.root); n > total-1 {
		t.Errorf("after prune --keep-storage %d: %d bytes", total-1, n)
	}
	allCached(t, e.build(oldCtx).out)
	if st := stepStates(e.build(newCtx).out)["[2/2] COPY new.bin /new.bin"]; st != "MISS" {
		t.Errorf("least recently used record survived keep-storage: %s", st)
	}
	if r := e.run("prune", "--filter", "since=1h"); r.err == nil {
		t.Errorf("unknown filter accepted:\n%s", r.out)
	}
	if r := e.run("prune", "--keep-storage", "1.5x"); r.err == nil {
		t.Errorf("bad size accepted:\n%s", r.out)
	}

	// --all: the pulled base goes too, and the next build pulls it again.
	if r := e.run("prune", "--all"); r.err != nil || !strings.Contains(r.out, "1 base image") {
		t.Fatalf("prune --all: %v\n%s", r.err, r.out)
	}
	if du := e.run("du", "--verbose"); inventoryHas(du.out, store.KindBase) || inventoryHas(du.out, store.KindRecord) {
		t.Errorf("du after prune --all:\n%s", du.out)
	}
	r = e.build(oldCtx)
	if !r.has("load metadata for") {
		t.Errorf("base not pulled again after prune --all:\n%s", r.out)
	}
}

// slowServer serves any path after a delay; arrived receives each request's path as it comes in.
// A build that ADDs from it holds the store (shared lock) for the delay, with no RUN needed.
func slowServer(t *testing.T, delay time.Duration) (url string, arrived <-chan string) {
	t.Helper()
	ch := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch <- r.URL.Path
		time.Sleep(delay)
		fmt.Fprintf(w, "content of %s\n", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

func waitArrived(t *testing.T, arrived <-chan string) {
	t.Helper()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the build never fetched from the slow server")
	}
}

// startBuild starts `strata build` in the background; wait returns its output and error.
func (e *env) startBuild(extraEnv []string, args ...string) (wait func() (string, error)) {
	e.t.Helper()
	cmd := exec.Command(strataBin, append([]string{"--root", e.root, "build", "--progress=plain"}, args...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.Env = append(os.Environ(), extraEnv...)
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return func() (string, error) {
		err := cmd.Wait()
		return buf.String(), err
	}
}

// prune waits for running builds (it does not refuse and does not run beside them).
func TestPruneWaitsForRunningBuild(t *testing.T) {
	e := newEnv(t)
	url, arrived := slowServer(t, 3*time.Second)
	ctx := e.project("slow", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY a.txt /a.txt\nADD " + url + "/slow.txt /slow.txt\n", "a.txt": "a\n"})
	e.build(e.project("warm", map[string]string{"Dockerfile": "FROM {{BASE}}\n"})) // pull first
	wait := e.startBuild(nil, "-t", "slow:1", ctx)
	waitArrived(t, arrived) // the build is running and holds the store
	start := time.Now()
	r := e.run("prune")
	pruneDone := time.Now()
	out, err := wait()
	if err != nil {
		t.Fatalf("build beside prune failed: %v\n%s", err, out)
	}
	if r.err != nil || !strings.Contains(r.out, "waiting for running builds") {
		t.Fatalf("prune: %v\n%s", r.err, r.out)
	}
	if pruneDone.Sub(start) < 2*time.Second {
		t.Errorf("prune finished after %v, before the 3s RUN could", pruneDone.Sub(start))
	}
	// The prune ran after the build: the build's cache is gone, its tagged image is not.
	if !strings.Contains(e.run("images").out, "slow:1") {
		t.Error("tagged image removed")
	}
	go func() { // the rebuild fetches again
		for range arrived {
		}
	}()
	r2 := e.build(ctx)
	if st := stepStates(r2.out)["[2/3] COPY a.txt /a.txt"]; st != "MISS" {
		t.Errorf("COPY after prune: %s, want MISS (prune ran after the build)\n%s", st, r2.out)
	}
}

// A build's automatic GC never runs while another build holds the store.
func TestGCSkippedWhileAnotherBuildRuns(t *testing.T) {
	e := newEnv(t)
	url, arrived := slowServer(t, 3*time.Second)
	slow := e.project("slow", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY a.txt /a.txt\nADD " + url + "/slow.txt /slow.txt\n", "a.txt": randomText(t, 1000)})
	fast := e.project("fast", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY b.txt /b.txt\n", "b.txt": randomText(t, 1000)})
	e.build("--gc-keep-storage", "off", e.project("warm", map[string]string{"Dockerfile": "FROM {{BASE}}\n"}))
	wait := e.startBuild(nil, "--gc-keep-storage", "off", slow)
	waitArrived(t, arrived)
	r := e.build("--gc-keep-storage", "1KB", fast)
	if !r.has("skipped while other builds use it") {
		t.Errorf("GC beside a running build was not skipped:\n%s", r.out)
	}
	out, err := wait()
	if err != nil {
		t.Fatalf("slow build: %v\n%s", err, out)
	}
	// Both results are intact; the slow build's cache was never touched.
	go func() {
		for range arrived {
		}
	}()
	allCached(t, e.build("--gc-keep-storage", "off", slow).out)
	allCached(t, e.build("--gc-keep-storage", "off", fast).out)
}
