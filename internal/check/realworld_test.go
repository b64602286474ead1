package check

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestRealWorldPrecisionRecall measures STR001 on Dockerfiles kept from public repositories
// (testdata/realworld, sources and licences in labels.tsv). Each was labelled by hand, before
// strata ran on it, with the line of the broad copy that comes before a dependency install, or
// "-". Unlike the synthetic corpus these were not written by the rule's author, so they say
// how the rule does on files it was not shaped on. The check runs without a build context, as
// CI has none of those repositories: what the rule needs from a context (a vendor directory, a
// directory's manifests) it must do without.
func TestRealWorldPrecisionRecall(t *testing.T) {
	labels := readRealWorldLabels(t)
	if len(labels) < 60 {
		t.Fatalf("%d labelled real-world Dockerfiles, want at least 60", len(labels))
	}
	var tp, fp, fn, positives int
	var disagreements []string
	for _, l := range labels {
		df, err := os.ReadFile(filepath.Join("testdata/realworld", l.file))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Check(Options{Path: l.file, Dockerfile: df})
		if err != nil {
			t.Fatalf("%s: %v", l.file, err)
		}
		got := map[int]bool{}
		for _, f := range rep.Findings {
			if f.Rule == "STR001" {
				got[f.Line] = true
			}
		}
		if len(l.lines) > 0 {
			positives++
		}
		for line := range got {
			if l.lines[line] {
				tp++
			} else {
				fp++
				disagreements = append(disagreements, fmt.Sprintf("%s: labelled %s, STR001 at line %d (false positive)", l.file, l.label(), line))
			}
		}
		for line := range l.lines {
			if !got[line] {
				fn++
				disagreements = append(disagreements, fmt.Sprintf("%s: labelled %s, no STR001 there (missed)", l.file, l.label()))
			}
		}
	}
	sort.Strings(disagreements)
	for _, d := range disagreements {
		t.Log(d)
	}
	p, r := ratio(tp, tp+fp), ratio(tp, tp+fn)
	t.Logf("STR001 on %d real-world Dockerfiles (%d positive, %d negative): precision %.2f (%d/%d), recall %.2f (%d/%d)",
		len(labels), positives, len(labels)-positives, p, tp, tp+fp, r, tp, tp+fn)
	if positives < 20 || len(labels)-positives < 20 {
		t.Errorf("%d positives and %d negatives: the set needs at least 20 of each to measure both", positives, len(labels)-positives)
	}
	if p < 0.9 || r < 0.9 {
		t.Errorf("STR001 precision %.2f recall %.2f on real-world Dockerfiles, want both >= 0.9", p, r)
	}
}

type realWorldLabel struct {
	file  string
	lines map[int]bool
}

func (l realWorldLabel) label() string {
	if len(l.lines) == 0 {
		return "no broad copy before an install"
	}
	var s []string
	for line := range l.lines {
		s = append(s, strconv.Itoa(line))
	}
	sort.Strings(s)
	return "line " + strings.Join(s, ",")
}

// readRealWorldLabels reads labels.tsv: file, repo, path, commit, licence, line(s) or "-",
// note. Every row must name a kept file with its source and licence, and every kept file must
// have a row, so the set cannot drift from its labels.
func readRealWorldLabels(t *testing.T) []realWorldLabel {
	t.Helper()
	data, err := os.ReadFile("testdata/realworld/labels.tsv")
	if err != nil {
		t.Fatal(err)
	}
	var out []realWorldLabel
	seen := map[string]bool{}
	for i, row := range strings.Split(string(data), "\n") {
		if row == "" || strings.HasPrefix(row, "#") {
			continue
		}
		c := strings.Split(row, "\t")
		if len(c) != 7 || c[1] == "" || c[2] == "" || len(c[3]) != 40 || c[4] == "" || c[6] == "" {
			t.Fatalf("labels.tsv:%d: want file, repo, path, 40-hex commit, licence, line or -, note: %q", i+1, row)
		}
		l := realWorldLabel{file: c[0], lines: map[int]bool{}}
		if c[5] != "-" {
			for _, s := range strings.Split(c[5], ",") {
				n, err := strconv.Atoi(s)
				if err != nil || n < 1 {
					t.Fatalf("labels.tsv:%d: bad line %q", i+1, c[5])
				}
				l.lines[n] = true
			}
		}
		seen[l.file] = true
		out = append(out, l)
	}
	files, _ := filepath.Glob("testdata/realworld/*.Dockerfile")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no row in labels.tsv", f)
		}
	}
	return out
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}
