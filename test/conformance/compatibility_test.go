package conformance

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// docRow is one row of a table in docs/COMPATIBILITY.md: | feature | status | how / why | tests |.
type docRow struct {
	feature, status, tests string
	line                   int
}

var statuses = map[string]bool{"supported": true, "differs": true, "not supported": true}

func readCompatibilityDoc(t *testing.T) []docRow {
	t.Helper()
	b, err := os.ReadFile("../../docs/COMPATIBILITY.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []docRow
	for i, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| feature") || strings.HasPrefix(l, "|---") || strings.HasPrefix(l, "| ---") {
			continue
		}
		// A cell may hold an escaped pipe (`--progress=plain\|json`).
		cells := strings.Split(strings.Trim(strings.ReplaceAll(l, `\|`, "\x00"), "|"), "|")
		for i := range cells {
			cells[i] = strings.ReplaceAll(cells[i], "\x00", "|")
		}
		if len(cells) != 4 {
			t.Errorf("docs/COMPATIBILITY.md:%d: want 4 cells (feature | status | how / why | tests), got %d", i+1, len(cells))
			continue
		}
		r := docRow{feature: strings.Trim(strings.TrimSpace(cells[0]), "`"), status: strings.TrimSpace(cells[1]), tests: cells[3], line: i + 1}
		if !statuses[r.status] {
			t.Errorf("docs/COMPATIBILITY.md:%d: status %q is not supported / differs / not supported", r.line, r.status)
		}
		rows = append(rows, r)
	}
	return rows
}

// goTests lists the Test functions of the repository's test files, for rows whose evidence is an
// end-to-end test rather than a conformance case.
func goTests(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	found := map[string]bool{}
	err := filepath.Walk("../..", func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() && (fi.Name() == ".git" || fi.Name() == "testdata") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(b), -1) {
				found[m[1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestCompatibilityDoc keeps docs/COMPATIBILITY.md true to the suite: every feature a case
// covers has a row; a row that says supported or differs names its evidence (conformance cases
// by feature tag, or Go tests by name) and that evidence exists; a "differs" case's feature is
// not listed as plainly supported.
func TestCompatibilityDoc(t *testing.T) {
	rows := readCompatibilityDoc(t)
	byFeature := map[string]docRow{}
	for _, r := range rows {
		if _, dup := byFeature[r.feature]; dup {
			t.Errorf("docs/COMPATIBILITY.md:%d: %s listed twice", r.line, r.feature)
		}
		byFeature[r.feature] = r
	}
	paths, _ := filepath.Glob("cases/*.txtar")
	cases := map[string][]string{}   // feature → cases
	differs := map[string][]string{} // feature → cases that differ
	for _, p := range paths {
		c, err := loadCase(p)
		if err != nil {
			t.Error(err)
			continue
		}
		for _, f := range c.meta["feature"] {
			cases[f] = append(cases[f], c.name)
			if len(c.meta["differs"]) > 0 {
				differs[f] = append(differs[f], c.name)
			}
		}
	}
	var missing []string
	for f := range cases {
		if _, ok := byFeature[f]; !ok {
			missing = append(missing, f)
		}
	}
	sort.Strings(missing)
	for _, f := range missing {
		t.Errorf("feature %q (cases %v) has no row in docs/COMPATIBILITY.md", f, cases[f])
	}
	tests := goTests(t)
	testName := regexp.MustCompile(`Test\w+`)
	for _, r := range rows {
		named := testName.FindAllString(r.tests, -1)
		for _, n := range named {
			if !tests[n] {
				t.Errorf("docs/COMPATIBILITY.md:%d: %s names %s, which does not exist", r.line, r.feature, n)
			}
		}
		if r.status == "not supported" {
			continue
		}
		if len(cases[r.feature]) == 0 && len(named) == 0 {
			t.Errorf("docs/COMPATIBILITY.md:%d: %s is %s but no case has `feature: %s` and no test is named", r.line, r.feature, r.status, r.feature)
		}
		if r.status == "supported" && len(differs[r.feature]) > 0 {
			t.Errorf("docs/COMPATIBILITY.md:%d: %s says supported, but cases %v differ", r.line, r.feature, differs[r.feature])
		}
	}
	t.Logf("docs/COMPATIBILITY.md: %d rows, %d features with cases", len(rows), len(cases))
}
