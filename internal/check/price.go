package check

import (
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/strata-build/strata/internal/history"
)

// Cost is what a finding cost over the recorded builds of its Dockerfile.
type Cost struct {
	// Runs is how many times the affected step ran because of what the finding names.
	Runs int `json:"runs"`
	// Builds is how many recorded builds of this Dockerfile had the affected step.
	Builds int `json:"builds"`
	// Time is what those runs took (ns, as durations in build records).
	Time time.Duration `json:"time"`
	// Text says it in a sentence: "`COPY . .` at line 4 re-ran `npm ci` 23 times in 30 builds: 41 min".
	Text string `json:"text"`
}

type priceKind int

const (
	priceNone priceKind = iota
	// priceBroadCopy: the install re-ran because the broad copy before it brought changed files
	// that are not the install's manifests (after the fix it would have stayed cached).
	priceBroadCopy
	// priceEveryRun: every re-run of the step pays (downloads with no cache mount, or with the
	// cache mount cleaned).
	priceEveryRun
)

// pricing is how a rule's finding is priced; the rule knows what caused the re-runs, the
// records only say which steps ran and why.
type pricing struct {
	kind       priceKind
	lead, tail string   // the sentence around the counts
	manifests  []string // priceBroadCopy: globs of files whose change re-runs the install anyway
}

// installManifests are the names whose change would re-run the install even with the copy
// fixed, so a miss caused by them is not the broad copy's cost.
func installManifests(u use) []string {
	out := append([]string(nil), u.eco.manifests...)
	for _, m := range u.manifests {
		out = append(out, path.Base(m))
	}
	if u.wrapper != "" {
		out = append(out, path.Base(u.wrapper))
	}
	if u.eco.name == "pip" && len(u.manifests) == 0 {
		out = append(out, "requirements*.txt", "pyproject.toml", "setup.py", "setup.cfg")
	}
	return out
}

// shortText is an instruction as a short quoted snippet, for cost sentences that give the line
// themselves.
func shortText(in *instr) string {
	t := strings.Join(strings.Fields(in.node.Original), " ")
	if len(t) > 40 {
		t = t[:37] + "..."
	}
	return "`" + t + "`"
}

// ForDockerfile returns the records of builds that read the Dockerfile at p. Records name the
// path as the build was given it; a relative one is taken from the current directory, as the
// caller's p is, so `strata check` run where `strata build` was finds its builds.
func ForDockerfile(recs []*history.Record, p string) []*history.Record {
	want := canonicalPath(p)
	var out []*history.Record
	for _, r := range recs {
		if r.Dockerfile != "" && canonicalPath(r.Dockerfile) == want {
			out = append(out, r)
		}
	}
	return out
}

func canonicalPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		p = a
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return filepath.Clean(p)
}

// PriceFromHistory prices the report from the build history under the store root: the records
// naming the report's Dockerfile. Unreadable records are skipped and returned as notes, as
// `strata history` does.
func PriceFromHistory(r *Report, root string) (skipped []string, err error) {
	recs, skipped, err := history.List(root)
	if err != nil {
		return skipped, err
	}
	Price(r, ForDockerfile(recs, r.Path))
	return skipped, nil
}

// Price sets the Cost of each finding whose rule history can price, from recs: records of builds
// of this Dockerfile, whatever its content was then. Steps are matched by stage and instruction
// text, not line, so a finding still finds its step after lines moved above it; a build that
// did not have the step does not count. A finding no build had keeps a nil Cost.
func Price(r *Report, recs []*history.Record) {
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.price.kind == priceNone || f.Affects.Text == "" {
			continue
		}
		c := Cost{}
		for _, rec := range recs {
			ri := findStep(rec.Steps, len(rec.Steps), f.Affects)
			if ri < 0 {
				continue
			}
			c.Builds++
			s := rec.Steps[ri]
			if s.Result != history.ResultMiss || s.Reason == reasonFirstRun {
				continue
			}
			if f.price.kind == priceBroadCopy && !copyCaused(rec.Steps, ri, f) {
				continue
			}
			c.Runs++
			c.Time += s.Duration
		}
		if c.Builds == 0 {
			continue
		}
		c.Text = fmt.Sprintf("%s %d %s in %d %s%s: %s", f.price.lead, c.Runs, plural(c.Runs, "time"), c.Builds, plural(c.Builds, "build"),
			f.price.tail, formatDuration(c.Time))
		f.Cost = &c
	}
}

// Miss reasons the solver gives (internal/solver explain) that the pricing tells apart.
const (
	reasonFirstRun = "no earlier build of this step"
	reasonParent   = "parent step changed"
)

// findStep returns the index, among steps[:before], of the step of st's stage whose instruction
// is st's text, the one nearest st's position when several are; -1 when none is.
func findStep(steps []history.Step, before int, st Step) int {
	want := normText(st.Text)
	best := -1
	for i, s := range steps[:before] {
		if s.Stage != st.Stage || normText(s.Text) != want {
			continue
		}
		if best < 0 || abs(s.Pos-st.Pos) < abs(steps[best].Pos-st.Pos) {
			best = i
		}
	}
	return best
}

// normText compares instructions as BuildKit's parser and progress write them: the keyword in
// any case, continuation lines joined.
func normText(s string) string {
	f := strings.Fields(s)
	if len(f) > 0 {
		f[0] = strings.ToUpper(f[0])
	}
	return strings.Join(f, " ")
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// copyCaused reports whether the install at steps[ri] ran only because the finding's broad copy
// brought changed files other than the install's manifests: the copy missed on a file change,
// and every step from it to the install missed because its parent did. A change the install
// would have seen anyway (a manifest, its own instruction, a build arg) is not the copy's cost.
// The solver names only the first changed file (sorted), so a manifest changed along with an
// earlier-sorting source file is counted.
func copyCaused(steps []history.Step, ri int, f *Finding) bool {
	if steps[ri].Reason != reasonParent {
		return false
	}
	ci := findStep(steps, ri, f.at)
	if ci < 0 {
		return false
	}
	for _, s := range steps[ci+1 : ri] {
		if s.Stage != f.Affects.Stage || s.Result != history.ResultMiss || s.Reason != reasonParent {
			return false
		}
	}
	c := steps[ci]
	if c.Result != history.ResultMiss {
		return false
	}
	file, ok := changedFile(c.Reason)
	if !ok {
		return false
	}
	for _, m := range f.price.manifests {
		if ok, _ := path.Match(m, path.Base(file)); ok {
			return false
		}
	}
	return true
}

var moreFiles = regexp.MustCompile(` \(\+\d+ files\)$`)

// changedFile reads a file-change miss reason ("src/a.js changed (+2 files)", "x added",
// "file mode changed on x", "source files changed") and returns the file it names ("" when it
// names none).
func changedFile(reason string) (string, bool) {
	reason = moreFiles.ReplaceAllString(reason, "")
	if f, ok := strings.CutPrefix(reason, "file mode changed on "); ok {
		return f, true
	}
	if reason == "source files changed" {
		return "", true
	}
	for _, p := range []string{"instruction ", "build arg or env ", "files in mount ", "content of ", "base image ", "parent step ", "no "} {
		if strings.HasPrefix(reason, p) {
			return "", false
		}
	}
	for _, s := range []string{" changed", " added", " removed"} {
		if f, ok := strings.CutSuffix(reason, s); ok && f != "" {
			return f, true
		}
	}
	return "", false
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// formatDuration gives seconds where a build's steps are short and minutes where the total is
// what a team would notice.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < 10*time.Minute:
		return d.Round(time.Second).String()
	case d < 2*time.Hour:
		return fmt.Sprintf("%d min", int(d.Round(time.Minute).Minutes()))
	}
	return fmt.Sprintf("%.1f h", d.Hours())
}

// Preflight is `strata build --check`: it hands warn the findings on the Dockerfile a build is
// about to read, one line each, with its cost when the build history under root ("" for none)
// knows the Dockerfile. Nothing here fails a build: a Dockerfile the rules cannot read is one
// more warning (the build reports its own error for it).
func Preflight(o Options, root string, warn func(string)) {
	rep, err := Check(o)
	if err != nil {
		warn("check: " + err.Error())
		return
	}
	if root != "" {
		// History only adds prices; one that cannot be read leaves the findings unpriced.
		PriceFromHistory(rep, root)
	}
	for _, l := range rep.Lines() {
		warn(l)
	}
}
