package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Three builds, a source edit before the second: stats counts three builds, the edited COPY hit
// once in three (the third build), the RUN after it re-ran once only because of it, and the JSON
// says the same.
func TestStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	df := "FROM {{BASE}}\nRUN echo base > /base\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n"
	ctx := e.project("stats", map[string]string{"Dockerfile": df, "a.txt": "one\n"})
	e.build(ctx)
	if err := os.WriteFile(filepath.Join(ctx, "a.txt"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.build(ctx)
	e.build(ctx)

	r := e.run("stats")
	if r.err != nil {
		t.Fatalf("strata stats: %v\n%s", r.err, r.out)
	}
	t.Logf("strata stats:\n%s", r.out)
	if l := lineContaining(r.out, "Builds:"); !strings.Contains(l, "3 (3 ok), all history") {
		t.Errorf("builds line %q, want 3 ok over all history", l)
	}
	if l := lineContaining(r.out, "Cached:"); !strings.Contains(l, "4 of 9 steps") {
		t.Errorf("cached line %q, want 4 of 9 steps (0 + 1 + 3)", l)
	}
	if l := strings.Fields(lineContaining(r.out, "COPY a.txt /a.txt")); len(l) < 6 || l[5] != "1/3" || l[7] != "2" {
		t.Errorf("COPY line %q, want hit rate 1/3 and 2 runs", l)
	}
	if l := strings.Fields(lineContaining(r.out, "RUN cat /a.txt")); len(l) < 12 || l[7] != "1/3" || l[11] != "1," {
		t.Errorf("RUN cat line %q, want hit rate 1/3 and one re-run", l)
	}
	if !strings.Contains(r.out, "* unchanged work:") || !strings.Contains(r.out, " a year at this rate") {
		t.Errorf("stats without the re-run arithmetic and its footnote:\n%s", r.out)
	}

	r = e.run("stats", "--since", "7d", "--format", "json")
	var st struct {
		Builds     int            `json:"builds"`
		Outcomes   map[string]int `json:"outcomes"`
		Hits       int            `json:"hits"`
		Total      int            `json:"total"`
		Saved      int64          `json:"saved"`
		Rerun      int64          `json:"rerun"`
		RerunSteps int            `json:"rerunSteps"`
		Steps      []struct {
			Text    string  `json:"text"`
			Pos     int     `json:"pos"`
			Builds  int     `json:"builds"`
			Hits    int     `json:"hits"`
			HitRate float64 `json:"hitRate"`
			Reruns  int     `json:"reruns"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(r.out), &st); err != nil || r.err != nil {
		t.Fatalf("stats --format json: %v %v\n%s", r.err, err, r.out)
	}
	if st.Builds != 3 || st.Outcomes["ok"] != 3 || st.Hits != 4 || st.Total != 9 || st.Saved <= 0 || st.RerunSteps != 1 || st.Rerun <= 0 || len(st.Steps) != 3 {
		t.Fatalf("stats --format json: %+v", st)
	}
	for _, s := range st.Steps {
		if s.Text == "COPY a.txt /a.txt" && (s.Pos != 3 || s.Builds != 3 || s.Hits != 1 || s.Reruns != 0) {
			t.Errorf("COPY step %+v", s)
		}
	}

	if r := e.run("stats", "--since", "7"); r.err == nil || !strings.Contains(r.out, "--since") {
		t.Errorf("--since 7 accepted: %v\n%s", r.err, r.out)
	}
	if r := e.run("stats", "--since", "1ns"); r.err != nil || !strings.Contains(r.out, "No builds recorded (last 1ns)") {
		t.Errorf("--since 1ns: %v\n%s", r.err, r.out)
	}
}
