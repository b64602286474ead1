package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// historyRow is one line of `strata history`: ID DATE TIME TARGET DURATION CACHED SAVED OUTCOME.
type historyRow struct{ id, target, cached, outcome string }

func historyRows(t *testing.T, e *env) []historyRow {
	t.Helper()
	r := e.run("history")
	if r.err != nil {
		t.Fatalf("strata history: %v\n%s", r.err, r.out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(r.out), "\n") {
		if !strings.HasPrefix(l, "note: ") { // stderr: damaged records
			lines = append(lines, l)
		}
	}
	if !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("strata history: no header\n%s", r.out)
	}
	var rows []historyRow
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 8 {
			t.Fatalf("strata history: line %q has %d fields\n%s", l, len(f), r.out)
		}
		rows = append(rows, historyRow{id: f[0], target: f[3], cached: f[5], outcome: f[7]})
	}
	return rows
}

// jsonHistory is the part of --format json the tests read (docs/HISTORY.md has all of it).
type jsonHistory struct {
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
	Error   string `json:"error"`
	Hits    int    `json:"hits"`
	Total   int    `json:"total"`
	Saved   int64  `json:"saved"`
	Steps   []struct {
		Stage    string `json:"stage"`
		Pos      int    `json:"pos"`
		Line     int    `json:"line"`
		Text     string `json:"text"`
		Key      string `json:"key"`
		Result   string `json:"result"`
		Reason   string `json:"reason"`
		Duration int64  `json:"duration"`
		Size     int64  `json:"size"`
		LastCost int64  `json:"lastCost"`
	} `json:"steps"`
}

// A build, an edit, a failing build: the history lists all three newest first with what the
// cache did, inspect names why the edited step ran, JSON parses, and the bound and rm work.
func TestHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	df := "FROM {{BASE}}\nRUN echo base > /base\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n"
	ctx := e.project("hist", map[string]string{"Dockerfile": df, "a.txt": "one\n"})
	e.build(ctx)
	if err := os.WriteFile(filepath.Join(ctx, "a.txt"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.build(ctx)
	failing := strings.ReplaceAll(df, "{{BASE}}", baseRef) + "RUN false\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(failing), 0o644); err != nil {
		t.Fatal(err)
	}
	e.buildFail(ctx)

	t.Logf("strata history:\n%s", e.run("history").out)
	rows := historyRows(t, e)
	var got []string
	for _, r := range rows {
		got = append(got, r.cached+" "+r.outcome)
	}
	// Newest first: the failing build served its 3 earlier steps from the cache and failed on
	// the 4th; the edit re-ran COPY and what follows; the first build ran everything.
	if want := "3/4 failed, 1/3 ok, 0/3 ok"; strings.Join(got, ", ") != want {
		t.Fatalf("strata history: %q, want %q", strings.Join(got, ", "), want)
	}
	if rows[0].target != "-" {
		t.Errorf("target %q, want - (the last stage)", rows[0].target)
	}

	// inspect by a unique prefix: the edited build names the file behind its miss.
	edited := rows[1].id
	r := e.run("history", "inspect", edited[:8])
	if r.err != nil {
		t.Fatalf("history inspect: %v\n%s", r.err, r.out)
	}
	t.Logf("strata history inspect %s:\n%s", edited[:8], r.out)
	if l := lineContaining(r.out, "Outcome:"); !strings.HasSuffix(l, " ok") {
		t.Errorf("inspect: %q, want ok\n%s", l, r.out)
	}
	copyLine := lineContaining(r.out, "COPY a.txt /a.txt")
	if !strings.Contains(copyLine, "RAN") || !strings.Contains(copyLine, "a.txt changed") {
		t.Errorf("inspect: COPY line %q, want RAN with the reason a.txt changed\n%s", copyLine, r.out)
	}
	if l := lineContaining(r.out, "RUN echo base"); !strings.Contains(l, "CACHED") {
		t.Errorf("inspect: RUN echo line %q, want CACHED\n%s", l, r.out)
	}

	// latest (the default) is the failed build, with its failing step.
	r = e.run("history", "inspect")
	if r.err != nil {
		t.Fatalf("history inspect: %v\n%s", r.err, r.out)
	}
	t.Logf("strata history inspect:\n%s", r.out)
	if l := lineContaining(r.out, "RUN false"); !strings.Contains(l, "FAILED") {
		t.Errorf("inspect latest: RUN false line %q, want FAILED\n%s", l, r.out)
	}
	if l := lineContaining(r.out, "Outcome:"); !strings.Contains(l, "failed: ") || !strings.Contains(l, "exit code: 1") {
		t.Errorf("inspect latest: %q, want the failure's one-line error", l)
	}

	// JSON: the list and one build.
	r = e.run("history", "--format", "json")
	var list []jsonHistory
	if err := json.Unmarshal([]byte(r.out), &list); err != nil || r.err != nil {
		t.Fatalf("history --format json: %v %v\n%s", r.err, err, r.out)
	}
	if len(list) != 3 || list[0].Outcome != "failed" || list[1].ID != edited || list[2].Outcome != "ok" {
		t.Fatalf("history --format json: %+v", list)
	}
	if list[0].Hits != 3 || list[0].Total != 4 || list[0].Saved <= 0 {
		t.Errorf("failed build: hits %d/%d saved %d, want 3/4 and time saved", list[0].Hits, list[0].Total, list[0].Saved)
	}
	fail := list[0].Steps[3]
	if fail.Result != "failed" || fail.Text != "RUN false" || fail.Line != 5 || fail.Pos != 5 || len(fail.Key) != 64 || fail.Reason == "" {
		t.Errorf("failing step %+v", fail)
	}
	r = e.run("history", "inspect", "--format", "json", edited)
	var one jsonHistory
	if err := json.Unmarshal([]byte(r.out), &one); err != nil || r.err != nil {
		t.Fatalf("history inspect --format json: %v %v\n%s", r.err, err, r.out)
	}
	if len(one.Steps) != 3 {
		t.Fatalf("edited build steps %+v", one.Steps)
	}
	cp := one.Steps[1]
	if cp.Result != "miss" || cp.Reason != "a.txt changed" || len(cp.Key) != 64 || cp.Size <= 0 || cp.LastCost <= 0 || cp.Stage != "stage-0" || cp.Pos != 3 {
		t.Errorf("edited COPY step %+v", cp)
	}
	if hit := one.Steps[0]; hit.Result != "hit" || hit.LastCost <= 0 || one.Saved != hit.LastCost {
		t.Errorf("cached step %+v, saved %d", hit, one.Saved)
	}

	// The bound: this build and the one before it stay.
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(strings.ReplaceAll(df, "{{BASE}}", baseRef)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.build("--history-keep", "2", ctx)
	rows = historyRows(t, e)
	if len(rows) != 2 || rows[0].outcome != "ok" || rows[0].cached != "3/3" || rows[1].outcome != "failed" {
		t.Fatalf("after --history-keep 2: %+v", rows)
	}

	// GC leaves the history alone, even a full prune; du counts it.
	if r := e.run("prune"); r.err != nil {
		t.Fatalf("prune: %v\n%s", r.err, r.out)
	}
	if n := len(historyRows(t, e)); n != 2 {
		t.Fatalf("%d builds in the history after prune, want 2", n)
	}
	if l := lineContaining(e.run("du").out, "build history"); !strings.HasPrefix(strings.Join(strings.Fields(l), " "), "build history 2 ") {
		t.Errorf("du: %q, want 2 build records", l)
	}

	// rm takes a prefix.
	if r := e.run("history", "rm", rows[1].id[:6]); r.err != nil || !strings.Contains(r.out, "Removed "+rows[1].id) {
		t.Fatalf("history rm: %v\n%s", r.err, r.out)
	}
	if rows = historyRows(t, e); len(rows) != 1 {
		t.Fatalf("after rm: %+v", rows)
	}
	if r := e.run("history", "rm", "nosuchbuild"); r.err == nil {
		t.Errorf("history rm of an unknown ID succeeded:\n%s", r.out)
	}
	if r := e.run("history", "prune"); r.err != nil || !strings.Contains(r.out, "Removed 1 build") {
		t.Fatalf("history prune: %v\n%s", r.err, r.out)
	}
	if rows = historyRows(t, e); len(rows) != 0 {
		t.Fatalf("after history prune: %+v", rows)
	}
}

// A damaged record costs a note, never the listing; the store config bounds the history when
// --history-keep is not given.
func TestHistoryDamagedAndConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("histcfg", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo hi > /hi\n"})
	cfg := filepath.Join(e.dir, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"history-keep": 2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"STRATA_CONFIG=" + cfg}
	for range 3 {
		if r := e.runIn("", env, "build", "--progress=plain", ctx); r.err != nil {
			t.Fatalf("build: %v\n%s", r.err, r.out)
		}
	}
	if rows := historyRows(t, e); len(rows) != 2 {
		t.Fatalf("config history-keep 2: %d builds kept", len(rows))
	}
	ents, err := os.ReadDir(filepath.Join(e.root, "history"))
	if err != nil || len(ents) != 2 {
		t.Fatalf("history dir: %v %v", ents, err)
	}
	if err := os.WriteFile(filepath.Join(e.root, "history", ents[1].Name()), []byte(`{"id": "tor`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run("history")
	if r.err != nil || !strings.Contains(r.out, "damaged record skipped") {
		t.Fatalf("history with a damaged record: %v\n%s", r.err, r.out)
	}
	if rows := historyRows(t, e); len(rows) != 1 {
		t.Fatalf("%d readable builds, want 1", len(rows))
	}
}

// A cancelled build is recorded as cancelled, with the step it was running.
func TestHistoryCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const nap = "41.75" // a duration no other test uses
	ctx := e.project("histcancel", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nRUN echo before > /before\nRUN echo long-run-started && sleep " + nap + "\n",
	})
	cmd := exec.Command(strataBin, "--root", e.root, "build", "--progress=plain", ctx)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "long-run-started") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the long RUN never started:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("cancelled build succeeded:\n%s", out.String())
	}
	r := e.run("history", "inspect", "--format", "json", "latest")
	var b jsonHistory
	if err := json.Unmarshal([]byte(r.out), &b); err != nil || r.err != nil {
		t.Fatalf("history inspect: %v %v\n%s", r.err, err, r.out)
	}
	if b.Outcome != "cancelled" || len(b.Steps) != 2 || b.Steps[0].Result != "miss" || b.Steps[1].Result != "cancelled" ||
		!strings.Contains(b.Steps[1].Text, "sleep "+nap) {
		t.Fatalf("cancelled build recorded as %+v\nbuild output:\n%s", b, out.String())
	}
}

func lineContaining(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// Hits served by an imported cache say so; build args are recorded as given, and a --secret's
// value reaches no record.
func TestHistoryRemoteHitsArgsAndSecrets(t *testing.T) {
	t.Parallel()
	a, b := newEnv(t), newEnv(t)
	files := map[string]string{
		"Dockerfile": "FROM {{BASE}}\nARG API_TOKEN\nRUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /n\nRUN echo \"$API_TOKEN\" > /t\n",
	}
	const secret = "hunter2-do-not-record-me"
	secretFile := filepath.Join(a.dir, "tok.txt")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(a.dir, "cache")
	args := []string{"--build-arg", "API_TOKEN=not-a-secret", "--secret", "id=tok,src=" + secretFile}
	a.build(append(args, "--cache-to", "type=local,dest="+cacheDir+",mode=max", a.project("app", files))...)
	b.build(append(args, "--cache-from", "type=local,src="+cacheDir, b.project("app", files))...)

	r := b.run("history", "inspect", "--format", "json")
	var rec struct {
		jsonHistory
		BuildArgs map[string]string `json:"buildArgs"`
		Steps     []struct {
			Result string `json:"result"`
			Remote bool   `json:"remote"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.out), &rec); err != nil || r.err != nil {
		t.Fatalf("history inspect: %v %v\n%s", r.err, err, r.out)
	}
	if len(rec.Steps) != 2 || !rec.Steps[0].Remote || !rec.Steps[1].Remote || rec.Steps[0].Result != "hit" || rec.Hits != 2 || rec.Saved <= 0 {
		t.Errorf("build from an imported cache recorded as %s", r.out)
	}
	if rec.BuildArgs["API_TOKEN"] != "not-a-secret" {
		t.Errorf("build args recorded as %v", rec.BuildArgs)
	}
	if l := lineContaining(b.run("history", "inspect").out, "RUN echo"); !strings.Contains(l, "CACHED (remote)") {
		t.Errorf("inspect: %q, want CACHED (remote)", l)
	}
	for _, e := range []*env{a, b} {
		filepath.WalkDir(filepath.Join(e.root, "history"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(readFile(t, p), secret) {
				t.Errorf("%s holds the secret's value", p)
			}
			return nil
		})
	}
}
