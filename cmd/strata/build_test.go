package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const appDockerfile = `FROM {{BASE}} AS build
WORKDIR /app
COPY package.json ./
RUN mkdir -p node_modules && echo dep > node_modules/dep.js
COPY src ./src
RUN cat src/*.js > bundle.js

FROM {{BASE}}
WORKDIR /srv
COPY --from=build /app/bundle.js ./
CMD ["cat", "/srv/bundle.js"]
`

func appProject(e *env) string {
	return e.project("app", map[string]string{
		"Dockerfile":    appDockerfile,
		"package.json":  `{"name":"app"}`,
		"src/app.js":    "console.log(1)\n",
		"src/lib.js":    "module.exports = 2\n",
		"notes.log":     "ignored\n",
		".dockerignore": "*.log\n",
	})
}

func TestSecondBuildIsCachedWithSameDigest(t *testing.T) {
	e := newEnv(t)
	ctx := appProject(e)
	id1, id2 := filepath.Join(e.dir, "id1"), filepath.Join(e.dir, "id2")
	r1 := e.build("-t", "app:1", "--iidfile", id1, ctx)
	if len(missed(r1.out)) == 0 {
		t.Fatalf("cold build reported no misses:\n%s", r1.out)
	}
	r2 := e.build("-t", "app:1", "--iidfile", id2, ctx)
	if m := missed(r2.out); len(m) != 0 {
		t.Fatalf("second build missed %v:\n%s", m, r2.out)
	}
	for name, st := range stepStates(r2.out) {
		if st != "CACHED" {
			t.Errorf("step %q: %s, want CACHED", name, st)
		}
	}
	if a, b := readFile(t, id1), readFile(t, id2); a != b || !strings.HasPrefix(a, "sha256:") {
		t.Fatalf("digests differ: %q vs %q", a, b)
	}
}

func TestSourceEditRerunsOnlyWhatReadsIt(t *testing.T) {
	e := newEnv(t)
	ctx := appProject(e)
	e.build(ctx)
	if err := os.WriteFile(filepath.Join(ctx, "src", "app.js"), []byte("console.log(2)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.build(ctx)
	st := stepStates(r.out)
	want := map[string]string{
		"[build 3/6] COPY package.json ./":                                        "CACHED",
		"[build 4/6] RUN mkdir -p node_modules && echo dep > node_modules/dep.js": "CACHED",
		"[build 5/6] COPY src ./src":                                              "MISS",
		"[build 6/6] RUN cat src/*.js > bundle.js":                                "MISS",
		"[stage-1 3/3] COPY --from=build /app/bundle.js ./":                       "MISS",
	}
	for name, w := range want {
		if st[name] != w {
			t.Errorf("%s: %s, want %s\n%s", name, st[name], w, r.out)
		}
	}
	if got := missReason(r.out, "COPY src ./src"); got != "src/app.js changed" {
		t.Errorf("miss reason %q, want %q", got, "src/app.js changed")
	}
	// Editing an ignored file re-runs nothing.
	if err := os.WriteFile(filepath.Join(ctx, "notes.log"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.build(ctx)
	if m := missed(r.out); len(m) != 0 {
		t.Fatalf("editing a .dockerignored file re-ran %v", m)
	}
}

// The cache record points at a compressed blob, so --compression is part of the key: a gzip
// layer never answers a zstd build.
func TestCompressionIsPartOfTheKey(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("zstd", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY a.txt /a.txt\n",
		"a.txt":      "a\n",
	})
	e.build(ctx)
	out := filepath.Join(e.dir, "z.tar")
	r := e.build("--compression", "zstd", "-o", "type=oci,dest="+out, ctx)
	if st := stepStates(r.out)["[2/2] COPY a.txt /a.txt"]; st != "MISS" {
		t.Fatalf("zstd build after a gzip build: COPY %s, want MISS\n%s", st, r.out)
	}
	data, err := exec.Command("tar", "-xOf", out, "index.json").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "manifest") {
		t.Fatalf("index.json: %s", data)
	}
	m, err := exec.Command("sh", "-c", "cd "+e.dir+" && mkdir -p zx && tar -xf z.tar -C zx && cat zx/blobs/sha256/$(sed 's/.*sha256:\\([0-9a-f]*\\).*/\\1/' zx/index.json)").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(m), "tar+zstd") {
		t.Fatalf("manifest has no zstd layer: %s", m)
	}
	if r := e.build("--compression", "zstd", ctx); len(missed(r.out)) != 0 {
		t.Fatalf("second zstd build missed %v", missed(r.out))
	}
}
