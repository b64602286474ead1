package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// jsonExplain is the part of explain --format json the test reads (docs/HISTORY.md has all).
type jsonExplain struct {
	Build   struct{ ID string } `json:"build"`
	Against struct{ ID string } `json:"against"`
	Changes []struct {
		Kind, Name, Old, New string
	} `json:"changes"`
	Steps []struct {
		Stage  string `json:"stage"`
		Pos    int    `json:"pos"`
		Line   int    `json:"line"`
		Causes []struct {
			Kind  string   `json:"kind"`
			Name  string   `json:"name"`
			Old   string   `json:"old"`
			New   string   `json:"new"`
			Files []string `json:"files"`
		} `json:"causes"`
		Because *struct {
			Stage string `json:"stage"`
			Pos   int    `json:"pos"`
		} `json:"because"`
	} `json:"steps"`
	Ran   int `json:"ran"`
	Total int `json:"total"`
}

// A 10-step build, then a build arg read at step 3 changes, then a file copied at step 6: explain
// names the arg old → new and the file, and folds the steps after each into one line.
func TestExplain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	df := `FROM {{BASE}}
RUN echo a > /a
ARG V
RUN echo "$V" > /v
RUN cat /v > /v2
WORKDIR /app
COPY src/ /app/
RUN cat /app/main.txt > /m
RUN echo 8 > /8
RUN echo 9 > /9
RUN echo 10 > /10
`
	ctx := e.project("explain", map[string]string{"Dockerfile": df, "src/main.txt": "one\n", "src/other.txt": "x\n"})
	e.build("--build-arg", "V=one", ctx)

	// The first build has nothing to be compared with: a clear message, not an empty answer.
	r := e.run("explain")
	if r.err == nil || !strings.Contains(r.out, "no earlier build of the same Dockerfile and target") {
		t.Errorf("explain of the first build: %v\n%s", r.err, r.out)
	}

	e.build("--build-arg", "V=two", ctx)
	r = e.run("explain")
	if r.err != nil {
		t.Fatalf("explain: %v\n%s", r.err, r.out)
	}
	t.Logf("strata explain (build arg):\n%s", r.out)
	if l := lineContaining(r.out, "[stage-0 3]"); !strings.Contains(l, `build arg V: "one" → "two"`) || !strings.Contains(l, "line 4") {
		t.Errorf("step 3: %q, want the build arg old → new\n%s", l, r.out)
	}
	if !strings.Contains(r.out, "re-ran only because of step 3 (line 4): steps 4–10") {
		t.Errorf("steps 4–10 not grouped under step 3\n%s", r.out)
	}
	if l := lineContaining(r.out, "Ran:"); !strings.Contains(l, "8 of 9 steps") {
		t.Errorf("%q, want 8 of 9 steps (the first RUN hit)", l)
	}
	if n := strings.Count(r.out, "\n"); n > 12 {
		t.Errorf("%d lines for one cause\n%s", n, r.out)
	}

	if err := os.WriteFile(filepath.Join(ctx, "src", "main.txt"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.build("--build-arg", "V=two", ctx)
	r = e.run("explain", "latest")
	if r.err != nil {
		t.Fatalf("explain: %v\n%s", r.err, r.out)
	}
	t.Logf("strata explain (file):\n%s", r.out)
	if l := lineContaining(r.out, "[stage-0 6]"); !strings.Contains(l, "main.txt changed") || strings.Contains(l, "other.txt") {
		t.Errorf("step 6: %q, want main.txt named\n%s", l, r.out)
	}
	if !strings.Contains(r.out, "re-ran only because of step 6 (line 7): steps 7–10") {
		t.Errorf("steps 7–10 not grouped under step 6\n%s", r.out)
	}
	if strings.Contains(r.out, "[stage-0 3]") {
		t.Errorf("step 3 hit but is explained\n%s", r.out)
	}

	// JSON, and any two builds: the first against the last.
	rows := historyRows(t, e)
	if len(rows) != 3 {
		t.Fatalf("%d builds in the history", len(rows))
	}
	r = e.run("explain", "--format", "json", rows[2].id[:8], rows[0].id)
	var x jsonExplain
	if err := json.Unmarshal([]byte(r.out), &x); err != nil || r.err != nil {
		t.Fatalf("explain --format json: %v %v\n%s", r.err, err, r.out)
	}
	if x.Build.ID != rows[0].id || x.Against.ID != rows[2].id || x.Total != 9 || x.Ran != 5 {
		t.Errorf("explain ID1 ID2: build %s against %s, ran %d of %d\n%s", x.Build.ID, x.Against.ID, x.Ran, x.Total, r.out)
	}
	var arg bool
	for _, c := range x.Changes {
		arg = arg || c.Kind == "build-arg" && c.Name == "V" && c.Old == "one" && c.New == "two"
	}
	if !arg {
		t.Errorf("changes %+v, want build arg V one → two", x.Changes)
	}
	if len(x.Steps) == 0 || x.Steps[0].Pos != 6 || len(x.Steps[0].Causes) != 1 || x.Steps[0].Causes[0].Kind != "file" ||
		len(x.Steps[0].Causes[0].Files) != 1 || !strings.HasSuffix(x.Steps[0].Causes[0].Files[0], "main.txt") {
		t.Errorf("explain ID1 ID2: steps %+v", x.Steps)
	}
	for _, s := range x.Steps[1:] {
		if s.Because == nil || s.Because.Pos != 6 {
			t.Errorf("step %d: because %+v, want step 6", s.Pos, s.Because)
		}
	}
	// The record keeps the base image's digest, which explain needs to say old → new.
	var bases struct {
		Bases []struct{ Stage, Image, Digest string } `json:"bases"`
	}
	r = e.run("history", "inspect", "--format", "json")
	if err := json.Unmarshal([]byte(r.out), &bases); err != nil || len(bases.Bases) != 1 || bases.Bases[0].Stage != "stage-0" ||
		bases.Bases[0].Image != baseRef || !strings.HasPrefix(bases.Bases[0].Digest, "sha256:") {
		t.Errorf("bases recorded as %+v (%v)", bases.Bases, err)
	}
	if r := e.run("explain", "nosuchbuild"); r.err == nil {
		t.Errorf("explain of an unknown build succeeded:\n%s", r.out)
	}
}
