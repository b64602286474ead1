package history

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// key makes a distinct 64-hex-digit key per label.
func key(label string) string {
	return strings.Repeat("0", 64-len(label)) + label
}

func hit(stage string, pos, line int, text, k string) Step {
	return Step{Stage: stage, Pos: pos, Line: line, Text: text, Key: key(k), Result: ResultHit}
}

func miss(stage string, pos, line int, text, k, reason string) Step {
	return Step{Stage: stage, Pos: pos, Line: line, Text: text, Key: key(k), Result: ResultMiss, Reason: reason}
}

func rec(id string, at int, args map[string]string, steps ...Step) *Record {
	return &Record{ID: id, Start: time.Date(2026, 12, 3, 7, 0, at, 0, time.UTC), Dockerfile: "/src/Dockerfile",
		DockerfileDigest: "sha256:df", Context: "/src", BuildArgs: args, Outcome: OutcomeOK, Steps: steps,
		Bases: []Base{{Stage: "stage-0", Image: "busybox:latest", Digest: "sha256:aaaaaaaaaaaaaaaa"}}}
}

// tenSteps is a 10-step stage ([stage-0 2..11], line = pos) as a first build ran it.
func tenSteps() []Step {
	var s []Step
	for p := 2; p <= 11; p++ {
		s = append(s, miss("stage-0", p, p, "RUN step"+string(rune('a'+p)), "p"+string(rune('a'+p)), "no earlier build of this step"))
	}
	return s
}

func text(t *testing.T, e *Explanation) string {
	t.Helper()
	var b bytes.Buffer
	if err := e.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A build arg read at step 3: the arg old → new at step 3, and every later step in one line.
func TestExplainBuildArgAndGrouping(t *testing.T) {
	prev := rec("aaaa", 1, map[string]string{"V": "1"}, tenSteps()...)
	cur := rec("bbbb", 2, map[string]string{"V": "2"}, tenSteps()...)
	cur.Steps[0] = hit("stage-0", 2, 2, cur.Steps[0].Text, "pc")
	prev.Steps[0].Key = key("pc")
	cur.Steps[1].Reason, cur.Steps[1].Key = "build arg or env V changed", key("new3")
	for i := 2; i < len(cur.Steps); i++ {
		cur.Steps[i].Reason, cur.Steps[i].Key = "parent step changed", key("new"+cur.Steps[i].Text)
	}
	e := Explain(prev, cur)
	if e.Ran != 9 || e.Total != 10 || len(e.Steps) != 9 {
		t.Fatalf("ran %d of %d, %d steps", e.Ran, e.Total, len(e.Steps))
	}
	c := e.Steps[0].Causes
	if len(c) != 1 || c[0].Kind != CauseBuildArg || c[0].Name != "V" || c[0].Old != "1" || c[0].New != "2" {
		t.Fatalf("step 3 causes %+v", c)
	}
	for _, x := range e.Steps[1:] {
		if x.Because == nil || x.Because.Pos != 3 || x.Because.Line != 3 || len(x.Causes) != 0 {
			t.Errorf("step %d: because %+v causes %+v, want step 3", x.Pos, x.Because, x.Causes)
		}
	}
	if len(e.Changes) != 1 || e.Changes[0].Summary != `build arg V: "1" → "2"` {
		t.Errorf("changes %+v", e.Changes)
	}
	out := text(t, e)
	t.Logf("\n%s", out)
	for _, want := range []string{
		"Changed:     build arg V: \"1\" → \"2\"",
		"Ran:         9 of 10 steps",
		"[stage-0 3]  line 3  RUN stepd  build arg V: \"1\" → \"2\"",
		"  └ re-ran only because of step 3 (line 3): steps 4–11",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if n := strings.Count(out, "\n"); n > 10 {
		t.Errorf("%d lines for one cause", n)
	}
}

// Every kind of cause the solver's reasons name, with old values taken from the earlier build.
func TestExplainCauseKinds(t *testing.T) {
	prev := rec("aaaa", 1, map[string]string{"GONE": "x", "KEEP": "k"},
		miss("stage-0", 2, 2, "COPY . /src", "c", ""),
		miss("stage-0", 3, 3, "RUN --mount=type=cache,id=npm,target=/root/.npm npm ci", "n", ""),
		miss("stage-0", 4, 4, "RUN --mount=type=secret,id=tok cat /run/secrets/tok", "s", ""),
		miss("stage-0", 5, 5, "RUN make", "m", ""),
		miss("stage-0", 6, 6, "RUN echo $GONE $NEW $DEF", "e", ""),
		miss("stage-0", 7, 7, "RUN --mount=type=bind,source=x,target=/x ls", "b", ""),
		miss("stage-0", 8, 8, "ADD https://example.com/f /f", "u", ""),
		miss("stage-0", 9, 9, "RUN same", "same", ""),
		miss("stage-0", 10, 10, "RUN lost", "lost", ""),
		miss("stage-0", 14, 14, "RUN --mount=type=ssh git clone x", "g", ""),
	)
	cur := rec("bbbb", 2, map[string]string{"NEW": "n", "KEEP": "k"},
		miss("stage-0", 2, 2, "COPY . /src", "c2", "src/a.go changed (+2 files)"),
		miss("stage-0", 3, 3, "RUN --mount=type=cache,id=npm2,target=/root/.npm npm ci", "n2", "instruction changed"),
		miss("stage-0", 4, 4, "RUN --mount=type=secret,id=tok2 cat /run/secrets/tok", "s2", "instruction changed"),
		miss("stage-0", 5, 5, "RUN make all", "m2", "instruction changed"),
		miss("stage-0", 6, 6, "RUN echo $GONE $NEW $DEF", "e2", "build arg or env DEF, GONE, NEW changed"),
		miss("stage-0", 7, 7, "RUN --mount=type=bind,source=x,target=/x ls", "b2", "files in mount /x changed"),
		miss("stage-0", 8, 8, "ADD https://example.com/f /f", "u2", "content of https://example.com/f changed"),
		miss("stage-0", 9, 9, "RUN same", "same", "no cache record (pruned or never stored)"),
		miss("stage-0", 10, 10, "RUN lost", "lost2", "no cache record (pruned or never stored)"),
		miss("stage-0", 11, 11, "RUN new", "new", "no earlier build of this step"),
		miss("stage-0", 12, 12, "RUN x", "x", "file mode changed on bin/run"),
		miss("stage-0", 13, 13, "COPY --from=build /out /out", "o", "/out/app removed"),
		miss("stage-0", 14, 14, "RUN --mount=type=ssh,id=gh git clone x", "g2", "instruction changed"),
	)
	cur.DockerfileDigest = "sha256:df2"
	cur.Bases[0].Digest = "sha256:bbbbbbbbbbbbbbbb"
	e := Explain(prev, cur)
	got := map[int][]Cause{}
	for _, x := range e.Steps {
		if x.Because != nil {
			t.Errorf("step %d attributed to step %d", x.Pos, x.Because.Pos)
		}
		got[x.Pos] = x.Causes
	}
	one := func(pos int, kind, summary string) Cause {
		t.Helper()
		if len(got[pos]) != 1 || got[pos][0].Kind != kind || got[pos][0].Summary != summary {
			t.Errorf("step %d: %+v, want %s %q", pos, got[pos], kind, summary)
			return Cause{}
		}
		return got[pos][0]
	}
	if c := one(2, CauseFile, "src/a.go changed (+2 more)"); c.More != 2 || len(c.Files) != 1 || c.Files[0] != "src/a.go" {
		t.Errorf("file cause %+v", c)
	}
	if c := one(3, CauseCacheMount, "cache mount /root/.npm id npm → npm2"); c.Old != "npm" || c.New != "npm2" {
		t.Errorf("cache mount cause %+v", c)
	}
	one(4, CauseSecret, "secret id tok → tok2")
	one(14, CauseSSH, "ssh id default → gh")
	one(5, CauseInstruction, `instruction "RUN make" → "RUN make all"`)
	env := got[6]
	if len(env) != 3 || env[0].Kind != CauseEnv || env[0].Summary != "ARG or ENV DEF changed (in the Dockerfile)" ||
		env[1].Summary != `build arg GONE: "x" → (unset)` || env[2].Summary != `build arg NEW: (unset) → "n"` {
		t.Errorf("step 6: %+v", env)
	}
	one(7, CauseMount, "files in mount /x changed")
	one(8, CauseURL, "content of https://example.com/f changed")
	one(9, CauseCacheGone, "same inputs as in build aaaa; its cache record was gone")
	one(10, CauseCacheGone, "no cache record (pruned or never stored)")
	one(11, CauseNewStep, "no earlier build ran this step")
	one(12, CauseFile, "file mode changed on bin/run")
	one(13, CauseFile, "/out/app removed")

	var kinds []string
	for _, c := range e.Changes {
		kinds = append(kinds, c.Kind+": "+c.Summary)
	}
	want := `dockerfile: Dockerfile edited|build-arg: build arg GONE: "x" → (unset)|build-arg: build arg NEW: (unset) → "n"|` +
		`base: base image busybox:latest: sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb`
	if strings.Join(kinds, "|") != want {
		t.Errorf("changes\n%s\nwant\n%s", strings.Join(kinds, "|"), want)
	}
	t.Logf("\n%s", text(t, e))
}

// The base image moved: the digest old → new, from the previous record's bases; an older
// record without bases still explains, with the old digest unknown.
func TestExplainBaseAndOldRecords(t *testing.T) {
	prev := rec("aaaa", 1, nil, miss("stage-0", 2, 2, "RUN a", "a", ""), miss("stage-0", 3, 3, "RUN b", "b", ""))
	cur := rec("bbbb", 2, nil,
		miss("stage-0", 2, 2, "RUN a", "a2", "base image busybox:latest now resolves to sha256:bbbbbbbbbbbbbbbb"),
		miss("stage-0", 3, 3, "RUN b", "b2", "parent step changed"))
	e := Explain(prev, cur)
	c := e.Steps[0].Causes
	if len(c) != 1 || c[0].Kind != CauseBase || c[0].Old != "sha256:aaaaaaaaaaaaaaaa" || c[0].New != "sha256:bbbbbbbbbbbbbbbb" ||
		c[0].Summary != "base image busybox:latest: sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb" {
		t.Errorf("base cause %+v", c)
	}
	if b := e.Steps[1].Because; b == nil || b.Pos != 2 {
		t.Errorf("step 3 because %+v", b)
	}

	// A record written before bases were recorded loads and explains.
	var old Record
	if err := json.Unmarshal([]byte(`{"version":1,"id":"cccc","start":"2026-12-03T07:00:00Z","dockerfile":"/src/Dockerfile",
		"target":"","outcome":"ok","steps":[{"stage":"stage-0","pos":2,"text":"RUN a","key":"`+key("a")+`","result":"miss","duration":1,"size":0,"lastCost":1}]}`), &old); err != nil {
		t.Fatal(err)
	}
	e = Explain(&old, cur)
	if c := e.Steps[0].Causes[0]; c.Old != "" || c.Summary != "base image busybox:latest: (not recorded) → sha256:bbbbbbbbbbbb" {
		t.Errorf("against an old record: %+v", c)
	}
	for _, c := range e.Changes {
		if c.Kind == CauseBase {
			t.Errorf("a record without bases reported a base change: %+v", c)
		}
	}
}

// --no-cache steps fold into one line; a step served from the cache under a new key still
// takes the blame for the steps after it; a fully cached build says so.
func TestExplainNoCacheAndHitUnderNewKey(t *testing.T) {
	var steps []Step
	for p := 2; p <= 31; p++ {
		steps = append(steps, miss("stage-0", p, p, "RUN x", "k"+string(rune('A'+p)), "--no-cache"))
	}
	prev := rec("aaaa", 1, nil, steps...)
	cur := rec("bbbb", 2, nil, steps...)
	out := text(t, Explain(prev, cur))
	t.Logf("\n%s", out)
	if !strings.Contains(out, "[stage-0] --no-cache: steps 2–31") || strings.Count(out, "\n") > 8 {
		t.Errorf("30 --no-cache steps:\n%s", out)
	}

	prev = rec("aaaa", 1, map[string]string{"V": "1"}, miss("stage-0", 2, 2, "RUN a", "a1", ""), miss("stage-0", 3, 3, "RUN b", "b1", ""))
	cur = rec("bbbb", 2, map[string]string{"V": "0"}, hit("stage-0", 2, 2, "RUN a", "a0"), miss("stage-0", 3, 3, "RUN b", "b0", "parent step changed"))
	e := Explain(prev, cur)
	if b := e.Steps[0].Because; b == nil || b.Pos != 2 {
		t.Fatalf("because %+v", b)
	}
	if out := text(t, e); !strings.Contains(out, "[stage-0] re-ran only because of step 2 (line 2), a hit under a new key: steps 3") {
		t.Errorf("hit under a new key:\n%s", out)
	}

	cur = rec("bbbb", 2, nil, hit("stage-0", 2, 2, "RUN a", "a1"))
	if out := text(t, Explain(prev, cur)); !strings.Contains(out, "Every step was served from the cache.") {
		t.Errorf("all cached:\n%s", out)
	}
}

// Previous finds the newest earlier build of the same Dockerfile and target, and says so
// clearly when there is none; any two builds compare.
func TestExplainPreviousAndTwoIDs(t *testing.T) {
	root := t.TempDir()
	a := rec("aaaa000000000001", 1, map[string]string{"V": "1"}, miss("stage-0", 2, 2, "RUN a", "a", "no earlier build of this step"))
	other := rec("aaaa000000000002", 2, nil, miss("stage-0", 2, 2, "RUN a", "a", ""))
	other.Target = "test"
	b := rec("aaaa000000000003", 3, map[string]string{"V": "2"}, miss("stage-0", 2, 2, "RUN a", "a2", "build arg or env V changed"))
	c := rec("aaaa000000000004", 4, map[string]string{"V": "3"}, miss("stage-0", 2, 2, "RUN a", "a3", "build arg or env V changed"))
	for _, r := range []*Record{a, other, b, c} {
		if err := Write(root, "", r, 0); err != nil {
			t.Fatal(err)
		}
	}
	p, _, err := Previous(root, c)
	if err != nil || p.ID != b.ID {
		t.Fatalf("previous of c: %v %v", p, err)
	}
	_, _, err = Previous(root, other)
	if !errors.Is(err, ErrNoPrevious) || !strings.Contains(err.Error(), "strata explain ID1 ID2") || !strings.Contains(err.Error(), "target test") {
		t.Errorf("previous of the only build of its target: %v", err)
	}
	if _, _, err := Previous(root, a); !errors.Is(err, ErrNoPrevious) {
		t.Errorf("previous of the first build: %v", err)
	}

	// a → c directly: the arg's values in those two builds, not b's.
	e := Explain(a, c)
	if x := e.Steps[0].Causes[0]; x.Old != "1" || x.New != "3" {
		t.Errorf("a → c: %+v", x)
	}
	if e.Against.ID != a.ID || e.Build.ID != c.ID {
		t.Errorf("refs %+v %+v", e.Against, e.Build)
	}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Build   struct{ ID string }
		Changes []struct{ Kind, Old, New string }
		Steps   []struct {
			Stage  string
			Pos    int
			Causes []struct{ Kind, Name, Old, New string }
		}
	}
	if err := json.Unmarshal(data, &back); err != nil || back.Build.ID != c.ID || len(back.Steps) != 1 ||
		back.Steps[0].Causes[0].Kind != "build-arg" || back.Changes[0].New != "3" {
		t.Errorf("json %s: %v", data, err)
	}
}

// A step that failed after re-running only because of an earlier step keeps a line of its own,
// and a chain of such steps points at the step that really changed.
func TestExplainFailedFollower(t *testing.T) {
	prev := rec("aaaa", 1, nil, miss("stage-0", 2, 2, "COPY a /a", "a", ""), miss("stage-0", 3, 3, "RUN b", "b", ""),
		miss("stage-0", 4, 4, "RUN c", "c", ""))
	fail := Step{Stage: "stage-0", Pos: 4, Line: 4, Text: "RUN c", Key: key("c2"), Result: ResultFailed, Reason: "parent step changed"}
	cur := rec("bbbb", 2, nil, miss("stage-0", 2, 2, "COPY a /a", "a2", "a changed"), miss("stage-0", 3, 3, "RUN b", "b2", "parent step changed"), fail)
	cur.Outcome = OutcomeFailed
	e := Explain(prev, cur)
	if b := e.Steps[2].Because; b == nil || b.Pos != 2 {
		t.Errorf("failed step because %+v, want step 2", b)
	}
	out := text(t, e)
	t.Logf("\n%s", out)
	if !strings.Contains(out, "re-ran only because of step 2 (line 2): steps 3–4") ||
		!strings.Contains(lineOf(out, "[stage-0 4]"), "re-ran because of step 2 (failed)") {
		t.Errorf("failed follower:\n%s", out)
	}
}

func lineOf(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
