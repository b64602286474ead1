package check

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/history"
)

const pricedDockerfile = "FROM node:20\nWORKDIR /app\nCOPY . .\nRUN npm ci\nCMD [\"node\", \"app.js\"]\n"

// build is a hand-made record of one build of the Dockerfile at path: copy and install are the
// results of `COPY . .` and `RUN npm ci` as "result/reason/duration" (the reason may hold
// slashes).
func build(path string, n int, copyRes, installRes string) *history.Record {
	step := func(pos, line int, text, res string) history.Step {
		result, rest, _ := strings.Cut(res, "/")
		s := history.Step{Stage: "stage-0", Pos: pos, Line: line, Text: text, Result: result}
		if i := strings.LastIndex(rest, "/"); i >= 0 {
			s.Reason = rest[:i]
			s.Duration, _ = time.ParseDuration(rest[i+1:])
		}
		return s
	}
	return &history.Record{
		ID: history.NewID(), Start: time.Unix(1700000000+int64(n), 0), Dockerfile: path, Outcome: history.OutcomeOK,
		Steps: []history.Step{
			step(2, 2, "WORKDIR /app", "hit"),
			step(3, 3, "COPY . .", copyRes),
			step(4, 4, "RUN npm ci", installRes),
		},
	}
}

func findingOf(t *testing.T, r *Report, rule string) *Finding {
	t.Helper()
	for i := range r.Findings {
		if r.Findings[i].Rule == rule {
			return &r.Findings[i]
		}
	}
	t.Fatalf("no %s finding in %+v", rule, r.Findings)
	return nil
}

// Only the install's re-runs that the broad copy caused are its cost: a source file changed in
// the copy and the install missed because its parent did. A manifest change (the install runs
// anyway), a hit, a first build and a change of the install's own inputs are not; a build of
// another Dockerfile is not counted at all. The records go through the store's history directory.
func TestPriceCountsBroadCopyReruns(t *testing.T) {
	root := t.TempDir()
	df := filepath.Join(t.TempDir(), "Dockerfile")
	recs := []*history.Record{
		build(df, 1, "miss/no earlier build of this step/1s", "miss/no earlier build of this step/40s"),
		build(df, 2, "miss/src/app.js changed/1s", "miss/parent step changed/10s"),
		build(df, 3, "miss/package.json changed/1s", "miss/parent step changed/12s"),
		build(df, 4, "hit", "hit"),
		build(df, 5, "miss/app.js changed (+3 files)/1s", "miss/parent step changed/20s"),
		build(df, 6, "hit", "miss/build arg or env NODE_ENV changed/15s"),
		build(df, 7, "miss/file mode changed on bin/run/1s", "miss/parent step changed/5s"),
		build(filepath.Join(t.TempDir(), "Dockerfile"), 8, "miss/src/app.js changed/1s", "miss/parent step changed/99s"),
	}
	for _, r := range recs {
		if err := history.Write(root, "", r, 0); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Check(Options{Path: df, Dockerfile: []byte(pricedDockerfile)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PriceFromHistory(rep, root); err != nil {
		t.Fatal(err)
	}

	f := findingOf(t, rep, "STR001")
	want := Cost{Runs: 3, Builds: 7, Time: 35 * time.Second, Text: "`COPY . .` at line 3 re-ran `npm ci` 3 times in 7 builds: 35.0s"}
	if f.Cost == nil || *f.Cost != want {
		t.Fatalf("STR001 cost = %+v, want %+v", f.Cost, want)
	}
	// Without a cache mount every re-run downloads again, whatever made it run; the first run
	// is not a re-run.
	f = findingOf(t, rep, "STR003")
	if f.Cost == nil || f.Cost.Runs != 5 || f.Cost.Builds != 7 || f.Cost.Time != 62*time.Second {
		t.Fatalf("STR003 cost = %+v, want 5 runs in 7 builds, 62s", f.Cost)
	}

	var text, js, sarif bytes.Buffer
	if err := WriteText(&text, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "\n  cost: `COPY . .` at line 3 re-ran `npm ci` 3 times in 7 builds: 35.0s\n") {
		t.Errorf("text output lacks the cost line:\n%s", text.String())
	}
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Findings []struct {
			Rule string `json:"rule"`
			Cost *Cost  `json:"cost"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(js.Bytes(), &out); err != nil || out.Findings[0].Rule != "STR001" || out.Findings[0].Cost == nil || *out.Findings[0].Cost != want {
		t.Errorf("json cost: %v\n%s", err, js.String())
	}
	if err := WriteSARIF(&sarif, rep, "v0.1.0"); err != nil {
		t.Fatal(err)
	}
	var log struct {
		Runs []struct {
			Results []struct {
				RuleID     string `json:"ruleId"`
				Message    struct{ Text string }
				Properties struct {
					Cost struct {
						Runs    int     `json:"runs"`
						Builds  int     `json:"builds"`
						Seconds float64 `json:"seconds"`
					} `json:"cost"`
				} `json:"properties"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(sarif.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	res := log.Runs[0].Results[0]
	if res.RuleID != "STR001" || !strings.HasSuffix(res.Message.Text, " Cost: "+want.Text+".") || res.Properties.Cost.Runs != 3 || res.Properties.Cost.Builds != 7 || res.Properties.Cost.Seconds != 35 {
		t.Errorf("sarif result: %+v", res)
	}
	if l := rep.Lines()[0]; !strings.HasSuffix(l, "(cost: "+want.Text+")") {
		t.Errorf("build warning line lacks the cost: %s", l)
	}
}

// Records of an older version of the Dockerfile still price the finding: steps are matched by
// stage and instruction text, so lines and positions that moved (a WORKDIR and comments added
// since) do not matter, and the keyword's case does not either. A build whose install was a
// different command does not count as a build of the step.
func TestPriceMatchesStepsByTextAfterLinesMoved(t *testing.T) {
	df := "FROM node:20\n# app\nENV CI=1\nWORKDIR /srv\nWORKDIR /srv/app\n\ncopy . .\nRUN npm ci\n"
	rep, err := Check(Options{Path: "Dockerfile", Dockerfile: []byte(df)})
	if err != nil {
		t.Fatal(err)
	}
	f := findingOf(t, rep, "STR001")
	if f.Line != 7 || f.Affects.Pos != 5 {
		t.Fatalf("finding at line %d, install at pos %d; the test expects 7 and 5", f.Line, f.Affects.Pos)
	}
	old := func(n int, install string, copyReason string, secs time.Duration) *history.Record {
		return &history.Record{ID: history.NewID(), Start: time.Unix(int64(n), 0), Dockerfile: "Dockerfile", Steps: []history.Step{
			{Stage: "stage-0", Pos: 2, Line: 2, Text: "COPY . .", Result: history.ResultMiss, Reason: copyReason},
			{Stage: "stage-0", Pos: 3, Line: 3, Text: install, Result: history.ResultMiss, Reason: "parent step changed", Duration: secs},
		}}
	}
	Price(rep, []*history.Record{
		old(1, "RUN npm ci", "index.js changed", 3*time.Minute),
		old(2, "RUN   npm ci", "lib/x.js added", 4*time.Minute),
		old(3, "RUN npm install", "lib/x.js changed", time.Minute),
	})
	f = findingOf(t, rep, "STR001")
	want := Cost{Runs: 2, Builds: 2, Time: 7 * time.Minute, Text: "`copy . .` at line 7 re-ran `npm ci` 2 times in 2 builds: 7m0s"}
	if f.Cost == nil || *f.Cost != want {
		t.Fatalf("cost = %+v, want %+v", f.Cost, want)
	}
}

// A step between the copy and the install that ran for its own reason is what re-ran the
// install, not the copy.
func TestPriceNotTheCopysFaultWhenAStepBetweenChanged(t *testing.T) {
	df := "FROM node:20\nWORKDIR /app\nCOPY . .\nRUN apk add git\nRUN npm ci\n"
	rep, err := Check(Options{Path: "Dockerfile", Dockerfile: []byte(df)})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(between string) *history.Record {
		return &history.Record{ID: history.NewID(), Dockerfile: "Dockerfile", Steps: []history.Step{
			{Stage: "stage-0", Pos: 3, Text: "COPY . .", Result: history.ResultMiss, Reason: "src/a.js changed"},
			{Stage: "stage-0", Pos: 4, Text: "RUN apk add git", Result: history.ResultMiss, Reason: between},
			{Stage: "stage-0", Pos: 5, Text: "RUN npm ci", Result: history.ResultMiss, Reason: "parent step changed", Duration: time.Second},
		}}
	}
	Price(rep, []*history.Record{rec("parent step changed"), rec("base image node:20 now resolves to sha256:x")})
	if c := findingOf(t, rep, "STR001").Cost; c == nil || c.Runs != 1 || c.Builds != 2 {
		t.Fatalf("cost = %+v, want 1 run in 2 builds", c)
	}
}

// With no build of this Dockerfile recorded (no history at all, or only other Dockerfiles'),
// findings carry no cost and every output is as it was before pricing existed.
func TestPriceWithoutHistoryChangesNothing(t *testing.T) {
	dir := t.TempDir()
	df := filepath.Join(dir, "Dockerfile")
	opts := Options{Path: df, Dockerfile: []byte(pricedDockerfile)}
	render := func(r *Report) string {
		var b bytes.Buffer
		WriteText(&b, r)
		WriteJSON(&b, r)
		WriteSARIF(&b, r, "v1")
		return b.String() + strings.Join(r.Lines(), "\n")
	}
	plain, err := Check(opts)
	if err != nil {
		t.Fatal(err)
	}
	want := render(plain)

	emptyRoot := t.TempDir()
	otherRoot := t.TempDir()
	if err := history.Write(otherRoot, "", build(filepath.Join(dir, "sub", "Dockerfile"), 1, "miss/a.js changed/1s", "miss/parent step changed/9s"), 0); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{emptyRoot, otherRoot, filepath.Join(dir, "no-store")} {
		rep, err := Check(opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := PriceFromHistory(rep, root); err != nil {
			t.Fatal(err)
		}
		for _, f := range rep.Findings {
			if f.Cost != nil {
				t.Errorf("root %s: %s has a cost %+v with no build of this Dockerfile", root, f.Rule, f.Cost)
			}
		}
		if got := render(rep); got != want {
			t.Errorf("root %s: output changed without history:\n%s\nwant\n%s", root, got, want)
		}
	}
	if strings.Contains(want, "cost") {
		t.Errorf("unpriced output mentions a cost:\n%s", want)
	}
}

// Preflight (strata build --check) hands each finding to warn, priced, and a Dockerfile it
// cannot parse is a warning, not an error.
func TestPreflight(t *testing.T) {
	root := t.TempDir()
	df := filepath.Join(t.TempDir(), "Dockerfile")
	if err := history.Write(root, "", build(df, 1, "miss/src/a.js changed/1s", "miss/parent step changed/3s"), 0); err != nil {
		t.Fatal(err)
	}
	var got []string
	Preflight(Options{Path: df, Dockerfile: []byte(pricedDockerfile)}, root, func(s string) { got = append(got, s) })
	if len(got) != 2 || !strings.Contains(got[0], "STR001") || !strings.HasSuffix(got[0], "(cost: `COPY . .` at line 3 re-ran `npm ci` 1 time in 1 build: 3.0s)") {
		t.Fatalf("preflight warnings: %q", got)
	}
	got = nil
	Preflight(Options{Path: df, Dockerfile: []byte("FROM x\nCOPY\n")}, root, func(s string) { got = append(got, s) })
	if len(got) != 1 || !strings.HasPrefix(got[0], "check: ") {
		t.Fatalf("preflight on a bad Dockerfile: %q", got)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		1500 * time.Millisecond: "1.5s", 3*time.Minute + 12*time.Second: "3m12s",
		41*time.Minute + 20*time.Second: "41 min", 3 * time.Hour: "3.0 h",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
