package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCheckPricedFromHistory: a Dockerfile that copies the sources before the install is built,
// then rebuilt after three source edits, each re-running the install. `strata check` then says
// what the broad copy cost in those builds (text and JSON), still after a line is added above
// it; `strata build --check` prints the priced finding as a warning and builds (exit 0).
func TestCheckPricedFromHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("node", map[string]string{"Dockerfile": naiveNode, "npm": npmScript,
		"package.json": `{"name":"app"}` + "\n", "package-lock.json": "{}\n", "app.js": "v0\n"})
	df := filepath.Join(ctx, "Dockerfile")

	// Before any build the output is as it always was.
	if r := e.run("check", ctx); r.code != 1 || r.has("cost") {
		t.Fatalf("check without history: exit %d, want 1 and no cost\n%s", r.code, r.out)
	}

	e.build(ctx)
	for i := 1; i <= 3; i++ {
		writeCtx(t, ctx, "app.js", fmt.Sprintf("v%d\n", i))
		if st := stateOf(t, e.build(ctx).out, "RUN npm ci"); st != "MISS" {
			t.Fatalf("edit %d: install %s, want MISS", i, st)
		}
	}

	cost := regexp.MustCompile("(?m)^  cost: `COPY \\. \\.` at line 5 re-ran `npm ci` 3 times in 4 builds: [0-9.]+s$")
	r := e.run("check", ctx)
	if r.code != 1 || !r.has(df+":5: warning STR001") || !cost.MatchString(r.out) {
		t.Fatalf("check: exit %d, want 1 with STR001 at line 5 priced at 3 re-runs in 4 builds\n%s", r.code, r.out)
	}

	r = e.run("check", "--format=json", "--fail-on=none", ctx)
	var rep struct {
		Findings []struct {
			Rule string `json:"rule"`
			Cost *struct {
				Runs   int    `json:"runs"`
				Builds int    `json:"builds"`
				Time   int64  `json:"time"`
				Text   string `json:"text"`
			} `json:"cost"`
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(r.out), &rep); err != nil || len(rep.Findings) == 0 {
		t.Fatalf("json: %v\n%s", err, r.out)
	}
	if f := rep.Findings[0]; f.Rule != "STR001" || f.Cost == nil || f.Cost.Runs != 3 || f.Cost.Builds != 4 || f.Cost.Time <= 0 {
		t.Fatalf("json: STR001 cost %+v, want 3 runs in 4 builds taking some time\n%s", f.Cost, r.out)
	}
	r = e.run("check", "--format=sarif", "--fail-on=none", ctx)
	if r.code != 0 || !r.has("Cost: `COPY . .` at line 5 re-ran `npm ci` 3 times in 4 builds") || !r.has(`"builds": 4`) {
		t.Fatalf("sarif: exit %d, want the cost in the message and properties\n%s", r.code, r.out)
	}

	// The steps are found by their text: a line added above moves the finding, not its price.
	if err := os.WriteFile(df, []byte("# the app image\n"+readFile(t, df)), 0o644); err != nil {
		t.Fatal(err)
	}
	moved := regexp.MustCompile("(?m)^  cost: `COPY \\. \\.` at line 6 re-ran `npm ci` 3 times in 4 builds: [0-9.]+s$")
	if r := e.run("check", ctx); !moved.MatchString(r.out) {
		t.Fatalf("check after a line was added: want the finding at line 6 with the same price\n%s", r.out)
	}

	r = e.run("build", "--progress=plain", "--check", "-t", "checked", ctx)
	if r.code != 0 {
		t.Fatalf("build --check: exit %d, want 0 (findings never fail the build)\n%s", r.code, r.out)
	}
	warn := regexp.MustCompile("(?m)^WARNING: .*Dockerfile:6: warning STR001: .*\\(cost: `COPY \\. \\.` at line 6 re-ran `npm ci` 3 times in 4 builds: [0-9.]+s\\)$")
	if !warn.MatchString(r.out) {
		t.Fatalf("build --check: no priced STR001 warning\n%s", r.out)
	}
	// The findings come before the build's steps.
	if i, j := strings.Index(r.out, "STR001"), strings.Index(r.out, "RUN npm ci"); i < 0 || j < 0 || i > j {
		t.Fatalf("build --check: the findings should come before the steps\n%s", r.out)
	}
	if r := e.run("images"); !r.has("checked") {
		t.Fatalf("build --check built no image\n%s", r.out)
	}
	// Without the flag a build prints no finding.
	if r := e.build(ctx); r.has("STR001") {
		t.Fatalf("build without --check printed findings\n%s", r.out)
	}
}
