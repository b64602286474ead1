package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every miss says why, and inputs that did not change cause no miss (issue: the cache is right).
func TestMissReasons(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("reasons", map[string]string{
		"Dockerfile": `FROM {{BASE}}
ARG VERSION=1
COPY run.sh /app/run.sh
RUN echo "v$VERSION" > /app/version
COPY src /app/src
RUN cat /app/src/* > /app/all
`,
		"run.sh":    "#!/bin/sh\necho hi\n",
		"src/a.txt": "a\n",
		"src/b.txt": "b\n",
		"src/c.txt": "c\n",
	})
	r := e.build(ctx)
	if got := missReason(r.out, "COPY run.sh"); got != "no earlier build of this step" {
		t.Fatalf("cold build reason %q", got)
	}

	// Touching a file without changing it: no miss.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(ctx, "src", "a.txt"), later, later); err != nil {
		t.Fatal(err)
	}
	if m := missed(e.build(ctx).out); len(m) != 0 {
		t.Fatalf("touch re-ran %v", m)
	}

	// chmod +x: the COPY misses, saying the mode changed.
	if err := os.Chmod(filepath.Join(ctx, "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	r = e.build(ctx)
	if got := missReason(r.out, "COPY run.sh"); got != "file mode changed on run.sh" {
		t.Fatalf("chmod reason %q\n%s", got, r.out)
	}
	if got := missReason(r.out, `RUN echo "v$VERSION"`); got != "parent step changed" {
		t.Fatalf("after chmod, next step reason %q", got)
	}

	// A build arg.
	r = e.build("--build-arg", "VERSION=2", ctx)
	if got := missReason(r.out, `RUN echo "v$VERSION"`); got != "build arg or env VERSION changed" {
		t.Fatalf("build arg reason %q\n%s", got, r.out)
	}

	// Several files: the first is named, the rest counted.
	for _, f := range []string{"a.txt", "b.txt", "c.txt"} {
		if err := os.WriteFile(filepath.Join(ctx, "src", f), []byte(f+" edited\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r = e.build("--build-arg", "VERSION=2", ctx)
	if got := missReason(r.out, "COPY src"); got != "src/a.txt changed (+2 files)" {
		t.Fatalf("files reason %q\n%s", got, r.out)
	}

	// The instruction itself.
	df := readFile(t, filepath.Join(ctx, "Dockerfile"))
	df = strings.Replace(df, "cat /app/src/* > /app/all", "cat /app/src/* | sort > /app/all", 1)
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.build("--build-arg", "VERSION=2", ctx)
	if got := missReason(r.out, "RUN cat /app/src/*"); got != "instruction changed" {
		t.Fatalf("instruction reason %q\n%s", got, r.out)
	}
}

// A RUN that re-runs and produces the same files leaves the steps after it cached (early cutoff).
func TestRunWithIdenticalResultKeepsLaterStepsCached(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("cutoff", map[string]string{
		"Dockerfile": `FROM {{BASE}}
COPY input.txt /in/input.txt
RUN wc -l < /in/input.txt > /lines
COPY later.txt /later.txt
RUN cat /lines /later.txt > /out
`,
		"input.txt": "one\ntwo\n",
		"later.txt": "later\n",
	})
	e.build(ctx)
	// Another command with the same result: the RUN must re-run, and its output is identical, so
	// the filesystem after it is the same as before and nothing later re-runs. (Editing input.txt
	// instead would change /in/input.txt, which later steps can read: they must miss then.)
	df := readFile(t, filepath.Join(ctx, "Dockerfile"))
	df = strings.Replace(df, "RUN wc -l < /in/input.txt > /lines", "RUN cat /in/input.txt | wc -l > /lines", 1)
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.build(ctx)
	st := stepStates(r.out)
	if st["[3/5] RUN cat /in/input.txt | wc -l > /lines"] != "MISS" {
		t.Fatalf("RUN reading the edited file did not re-run\n%s", r.out)
	}
	for _, name := range []string{"[4/5] COPY later.txt /later.txt", "[5/5] RUN cat /lines /later.txt > /out"} {
		if st[name] != "CACHED" {
			t.Errorf("%s: %s, want CACHED after an identical re-run\n%s", name, st[name], r.out)
		}
	}
}

// --context-perms=normalize: the same checkout under another umask hits the same cache.
func TestContextPermsNormalize(t *testing.T) {
	e := newEnv(t)
	files := map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY . /src\nRUN ls -l /src > /listing\n",
		"a.txt":      "a\n",
		"tool.sh":    "#!/bin/sh\n",
	}
	laptop := e.project("laptop", files)
	ci := e.project("ci", files)
	// The laptop checkout was made with umask 0002, CI with 0022.
	for _, f := range []struct {
		dir  string
		name string
		mode os.FileMode
	}{{laptop, "a.txt", 0o664}, {laptop, "tool.sh", 0o775}, {laptop, "Dockerfile", 0o664}, {ci, "a.txt", 0o644}, {ci, "tool.sh", 0o755}, {ci, "Dockerfile", 0o644}} {
		if err := os.Chmod(filepath.Join(f.dir, f.name), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	e.build("--context-perms=normalize", laptop)
	r := e.build("--context-perms=normalize", ci)
	if m := missed(r.out); len(m) != 0 {
		t.Fatalf("normalized build of the same files under another umask missed %v\n%s", m, r.out)
	}
	// Without the option the mode difference is an input, as in BuildKit.
	r = e.build(laptop)
	if st := stepStates(r.out)["[2/3] COPY . /src"]; st != "MISS" {
		t.Fatalf("default perms: COPY . /src %s, want MISS\n%s", st, r.out)
	}
}
