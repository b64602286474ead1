package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Invalidation controls: --no-cache, --no-cache-filter and --pull behave as in buildx.

const invalidationDockerfile = `FROM {{BASE}} AS deps
COPY dep.txt /dep.txt
RUN cat /dep.txt > /deps.out

FROM deps AS build
COPY src.txt /src.txt
RUN cat /src.txt /deps.out > /app.out
RUN cat /proc/sys/kernel/random/uuid > /stamp

FROM {{BASE}}
COPY --from=build /app.out /app.out
COPY --from=build /stamp /stamp
COPY final.txt /final.txt
`

func invalidationProject(e *env) string {
	return e.project("inval", map[string]string{
		"Dockerfile": invalidationDockerfile,
		"dep.txt":    "dep\n",
		"src.txt":    "src\n",
		"final.txt":  "final\n",
	})
}

func wantStates(t *testing.T, out string, want map[string]string) {
	t.Helper()
	st := stepStates(out)
	for name, w := range want {
		if st[name] != w {
			t.Errorf("%s: %q, want %s", name, st[name], w)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

func TestInvalidationNoCacheFilterRerunsOnlyThatStage(t *testing.T) {
	e := newEnv(t)
	ctx := invalidationProject(e)
	e.build(ctx)
	allCached(t, e.build(ctx).out)

	r := e.build("--no-cache-filter", "build", ctx)
	wantStates(t, r.out, map[string]string{
		"[deps 2/3] COPY dep.txt /dep.txt":                          "CACHED",
		"[deps 3/3] RUN cat /dep.txt > /deps.out":                   "CACHED",
		"[build 2/4] COPY src.txt /src.txt":                         "MISS",
		"[build 3/4] RUN cat /src.txt /deps.out > /app.out":         "MISS",
		"[build 4/4] RUN cat /proc/sys/kernel/random/uuid > /stamp": "MISS",
		// Same content out of the re-run stage: its consumer stays cached (early cutoff)...
		"[stage-2 2/4] COPY --from=build /app.out /app.out": "CACHED",
		// ...new content is a miss, and so is what comes after it.
		"[stage-2 3/4] COPY --from=build /stamp /stamp": "MISS",
		"[stage-2 4/4] COPY final.txt /final.txt":       "MISS",
	})
	if got := missReason(r.out, "[build 2/4] COPY src.txt"); got != "--no-cache" {
		t.Errorf("miss reason %q, want --no-cache", got)
	}
	// The path is as it is in the stage: absolute.
	if got := missReason(r.out, "COPY --from=build /stamp"); got != "/stamp changed" {
		t.Errorf("consumer miss reason %q, want %q", got, "/stamp changed")
	}

	// Several stages, comma-separated or repeated, case-insensitive as in buildx.
	r = e.build("--no-cache-filter", "DEPS,build", ctx)
	wantStates(t, r.out, map[string]string{
		"[deps 2/3] COPY dep.txt /dep.txt":  "MISS",
		"[build 2/4] COPY src.txt /src.txt": "MISS",
	})
	// The filter does not stick: the next build is cached again.
	allCached(t, e.build(ctx).out)
}

func TestInvalidationNoCacheRerunsEverythingWithSameResult(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("nocache", map[string]string{
		"Dockerfile": "FROM {{BASE}} AS a\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n" +
			"FROM {{BASE}}\nCOPY --from=a /b.txt /b.txt\nCOPY a.txt /c.txt\n",
		"a.txt": "a\n",
	})
	out1, out2 := filepath.Join(e.dir, "o1"), filepath.Join(e.dir, "o2")
	e.build("-o", "type=local,dest="+out1, ctx)
	r := e.build("--no-cache", "-o", "type=local,dest="+out2, ctx)
	n := 0
	for name, st := range stepStates(r.out) {
		if strings.Contains(name, " FROM ") {
			continue
		}
		n++
		if st != "MISS" {
			t.Errorf("--no-cache: %s %s, want MISS", name, st)
		}
		if got := missReason(r.out, name); got != "--no-cache" {
			t.Errorf("--no-cache: %s reason %q", name, got)
		}
	}
	if n != 4 {
		t.Errorf("saw %d steps, want 4\n%s", n, r.out)
	}
	for _, f := range []string{"b.txt", "c.txt"} {
		if a, b := readFile(t, filepath.Join(out1, f)), readFile(t, filepath.Join(out2, f)); a != b {
			t.Errorf("%s differs with --no-cache: %q vs %q", f, a, b)
		}
	}
	// --no-cache writes fresh records; the next build is served from them.
	allCached(t, e.build(ctx).out)
}

func TestInvalidationPullReresolvesBaseTag(t *testing.T) {
	// A second store pushes a base image to a tag, then re-pushes different content to it.
	pusher := newEnv(t)
	baseTag := testReg.Addr() + "/pullbase:1"
	basectx := pusher.project("base", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY v.txt /v.txt\n", "v.txt": "one\n"})
	pusher.build("--push", "-t", baseTag, basectx)

	e := newEnv(t)
	ctx := e.project("app", map[string]string{"Dockerfile": "FROM " + baseTag + "\nCOPY c.txt /c.txt\n", "c.txt": "c\n"})
	out := func(name string) string { return filepath.Join(e.dir, name) }
	e.build("-o", "type=local,dest="+out("o1"), ctx)
	if got := readFile(t, filepath.Join(out("o1"), "v.txt")); got != "one\n" {
		t.Fatalf("v.txt %q", got)
	}

	if err := os.WriteFile(filepath.Join(basectx, "v.txt"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pusher.build("--push", "-t", baseTag, basectx)

	// Without --pull the tag resolves as it did before: fully cached, old content.
	r := e.build("-o", "type=local,dest="+out("o2"), ctx)
	allCached(t, r.out)
	if r.has("load metadata for") {
		t.Errorf("base resolved again without --pull:\n%s", r.out)
	}
	if got := readFile(t, filepath.Join(out("o2"), "v.txt")); got != "one\n" {
		t.Errorf("without --pull: v.txt %q, want the old base", got)
	}

	// --pull resolves the tag again: the new base, and the miss names it.
	r = e.build("--pull", "-o", "type=local,dest="+out("o3"), ctx)
	if !r.has("load metadata for") {
		t.Errorf("--pull did not resolve the base again:\n%s", r.out)
	}
	reason := missReason(r.out, "COPY c.txt")
	if !strings.Contains(reason, "base image") || !strings.Contains(reason, "pullbase:1") || !strings.Contains(reason, "sha256:") {
		t.Errorf("miss reason %q, want it to name the re-resolved base image\n%s", reason, r.out)
	}
	if got := readFile(t, filepath.Join(out("o3"), "v.txt")); got != "two\n" {
		t.Errorf("with --pull: v.txt %q, want the new base", got)
	}

	// The new resolution is remembered: the next build without --pull uses it, cached.
	r = e.build("-o", "type=local,dest="+out("o4"), ctx)
	allCached(t, r.out)
	if got := readFile(t, filepath.Join(out("o4"), "v.txt")); got != "two\n" {
		t.Errorf("after --pull: v.txt %q, want the new base", got)
	}
	// --pull with an unchanged tag: resolved again, still cached.
	allCached(t, e.build("--pull", ctx).out)
}
