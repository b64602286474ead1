package check

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestCorpusPrecisionRecall runs every rule over realistic Dockerfiles whose expected findings
// (rule and line) were written by reading each file, and requires precision and recall of at
// least 0.9, overall and for the ordering rule on its own.
func TestCorpusPrecisionRecall(t *testing.T) {
	files, _ := filepath.Glob("testdata/corpus/*.Dockerfile")
	if len(files) < 40 {
		t.Fatalf("corpus has %d Dockerfiles, want at least 40", len(files))
	}
	type tally struct{ tp, fp, fn int }
	all, perRule := tally{}, map[string]*tally{}
	rt := func(id string) *tally {
		if perRule[id] == nil {
			perRule[id] = &tally{}
		}
		return perRule[id]
	}
	for _, f := range files {
		base := strings.TrimSuffix(f, ".Dockerfile")
		name := filepath.Base(base)
		df, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		exp, err := os.ReadFile(base + ".expected")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, l := range strings.Split(string(exp), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				want[l] = true
			}
		}
		o := Options{Path: name + ".Dockerfile", Dockerfile: df}
		if spec, err := os.ReadFile(base + ".context"); err == nil {
			o.Context = writeContext(t, string(spec))
		}
		rep, err := Check(o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := map[string]bool{}
		for _, fd := range rep.Findings {
			got[fmt.Sprintf("%s %d", fd.Rule, fd.Line)] = true
		}
		for k := range got {
			id := strings.Fields(k)[0]
			if want[k] {
				all.tp++
				rt(id).tp++
			} else {
				all.fp++
				rt(id).fp++
				t.Logf("%s: false positive %s", name, k)
			}
		}
		for k := range want {
			if !got[k] {
				id := strings.Fields(k)[0]
				all.fn++
				rt(id).fn++
				t.Logf("%s: missed %s", name, k)
			}
		}
	}
	pr := func(x tally) (float64, float64) {
		p, r := 1.0, 1.0
		if x.tp+x.fp > 0 {
			p = float64(x.tp) / float64(x.tp+x.fp)
		}
		if x.tp+x.fn > 0 {
			r = float64(x.tp) / float64(x.tp+x.fn)
		}
		return p, r
	}
	ids := make([]string, 0, len(perRule))
	for id := range perRule {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p, r := pr(*perRule[id])
		fmt.Printf("corpus %s: tp=%d fp=%d fn=%d precision=%.3f recall=%.3f\n", id, perRule[id].tp, perRule[id].fp, perRule[id].fn, p, r)
	}
	p, r := pr(all)
	fmt.Printf("corpus all rules (%d Dockerfiles): tp=%d fp=%d fn=%d precision=%.3f recall=%.3f\n", len(files), all.tp, all.fp, all.fn, p, r)
	if p < 0.9 || r < 0.9 {
		t.Errorf("overall precision %.3f recall %.3f, want both >= 0.9", p, r)
	}
	if o := perRule["STR001"]; o != nil {
		if p, r := pr(*o); p < 0.9 || r < 0.9 {
			t.Errorf("STR001 precision %.3f recall %.3f, want both >= 0.9", p, r)
		}
	}
}

// TestCorpusFixes applies --fix to every corpus file: each rewrite must parse and leave fewer
// findings of the rules it fixed than the original had.
func TestCorpusFixes(t *testing.T) {
	files, _ := filepath.Glob("testdata/corpus/*.Dockerfile")
	applied := 0
	for _, f := range files {
		base := strings.TrimSuffix(f, ".Dockerfile")
		df, _ := os.ReadFile(f)
		o := Options{Path: filepath.Base(f), Dockerfile: df}
		if spec, err := os.ReadFile(base + ".context"); err == nil {
			o.Context = writeContext(t, string(spec))
		}
		before, err := Check(o)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Fix(o)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		o.Dockerfile = []byte(res.Dockerfile)
		after, err := Check(o)
		if err != nil {
			t.Fatalf("%s: rewritten file does not parse: %v\n%s", f, err, res.Dockerfile)
		}
		for _, a := range res.Applied {
			if a.Rule != "STR006" && count(after, a.Rule) >= count(before, a.Rule) {
				t.Errorf("%s: %s applied but fires as often as before", f, a.Rule)
			}
		}
		applied += len(res.Applied)
	}
	fmt.Printf("corpus fixes: %d applied over %d files\n", applied, len(files))
}
