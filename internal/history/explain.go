package history

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Kinds of cause, as --format json prints them (docs/HISTORY.md).
const (
	CauseFile        = "file"        // files a COPY/ADD or bind mount reads
	CauseBuildArg    = "build-arg"   // a --build-arg value
	CauseEnv         = "env"         // an ARG default or ENV the record does not keep the value of
	CauseBase        = "base"        // the base image resolved to another digest
	CauseInstruction = "instruction" // the instruction's text or options
	CauseCacheMount  = "cache-mount" // a RUN --mount=type=cache id
	CauseSecret      = "secret"      // a RUN --mount=type=secret id
	CauseSSH         = "ssh"         // a RUN --mount=type=ssh id
	CauseMount       = "mount"       // the files a RUN --mount reads
	CauseURL         = "url"         // the content an ADD URL serves
	CauseNoCache     = "no-cache"    // --no-cache (or --no-cache-filter)
	CauseNewStep     = "new-step"    // no earlier build ran this step
	CauseCacheGone   = "cache-gone"  // same inputs, but the cache record was pruned or never stored
	CauseOther       = "other"       // a reason this strata does not break down; Summary has it
	CauseDockerfile  = "dockerfile"  // build level only: the Dockerfile's bytes differ
	CauseTarget      = "target"      // build level only: the two builds have different targets
)

// Cause is one input that changed. Summary is what a person reads; the other fields say the same
// for programs.
type Cause struct {
	Kind    string   `json:"kind"`
	Summary string   `json:"summary"`
	Name    string   `json:"name,omitempty"` // build arg, image, mount target or id, URL
	Old     string   `json:"old,omitempty"`
	New     string   `json:"new,omitempty"`
	Files   []string `json:"files,omitempty"` // the first changed files (context paths, or absolute in a stage)
	More    int      `json:"more,omitempty"`  // changed files beyond Files
}

// StepRef names a step as progress does: [stage pos], plus its Dockerfile line.
type StepRef struct {
	Stage string `json:"stage"`
	Pos   int    `json:"pos"`
	Line  int    `json:"line,omitempty"`
}

// ExplainedStep is a step that ran (or failed, or was cancelled): either for causes of its own,
// or only because an earlier step of its stage changed the filesystem it starts from (Because).
type ExplainedStep struct {
	StepRef
	Text     string        `json:"text"`
	Result   string        `json:"result"`
	Reason   string        `json:"reason,omitempty"` // the miss reason as recorded
	Duration time.Duration `json:"duration"`
	Causes   []Cause       `json:"causes,omitempty"`
	Because  *StepRef      `json:"because,omitempty"`
}

// BuildRef identifies one of the two builds compared.
type BuildRef struct {
	ID         string    `json:"id"`
	Start      time.Time `json:"start"`
	Dockerfile string    `json:"dockerfile"`
	Target     string    `json:"target"`
	Outcome    string    `json:"outcome"`
}

// Explanation is why a build ran what it ran, compared with an earlier one.
type Explanation struct {
	Build   BuildRef `json:"build"`
	Against BuildRef `json:"against"`
	// Changes are the differences between the two builds as a whole: Dockerfile bytes, build
	// args, base images, target.
	Changes []Cause         `json:"changes"`
	Steps   []ExplainedStep `json:"steps"` // the steps that ran, in Dockerfile order
	Ran     int             `json:"ran"`
	Total   int             `json:"total"`
}

// ErrNoPrevious is returned when a build has no earlier build of the same Dockerfile and target.
var ErrNoPrevious = errors.New("no earlier build of the same Dockerfile and target in the history")

// Previous returns the newest build that started before cur with the same Dockerfile path and
// target: the builds whose steps the solver compared cur's with (its position is path + target).
func Previous(root string, cur *Record) (*Record, []string, error) {
	recs, skipped, err := List(root)
	if err != nil {
		return nil, skipped, err
	}
	for _, r := range recs {
		if r.ID != cur.ID && r.Start.Before(cur.Start) && r.Dockerfile == cur.Dockerfile && r.Target == cur.Target {
			return r, skipped, nil
		}
	}
	return nil, skipped, fmt.Errorf("build %s (%s, target %s): %w; name two builds to compare: strata explain ID1 ID2",
		cur.ID, cur.Dockerfile, orDash(cur.Target), ErrNoPrevious)
}

func ref(r *Record) BuildRef {
	return BuildRef{ID: r.ID, Start: r.Start, Dockerfile: r.Dockerfile, Target: r.Target, Outcome: r.Outcome}
}

// Explain says why cur ran the steps it ran, against prev. The per-step causes start from the
// reason the solver recorded (it compared with the inputs last seen at the same position, which
// for the default comparison is prev) and take the old values from prev: build args, base digests
// and instruction texts. A step whose parent changed is attributed to the earlier step that
// changed, whatever its own inputs did, as the solver stops comparing at the parent.
func Explain(prev, cur *Record) *Explanation {
	e := &Explanation{Build: ref(cur), Against: ref(prev), Changes: buildChanges(prev, cur), Steps: []ExplainedStep{}, Total: len(cur.Steps)}
	prevAt := map[StepRef]*Step{}
	for i := range prev.Steps {
		s := &prev.Steps[i]
		prevAt[StepRef{Stage: s.Stage, Pos: s.Pos}] = s
	}
	for i, s := range cur.Steps {
		if s.Result == ResultHit {
			continue
		}
		e.Ran++
		x := ExplainedStep{StepRef: StepRef{Stage: s.Stage, Pos: s.Pos, Line: s.Line}, Text: s.Text, Result: s.Result,
			Reason: s.Reason, Duration: s.Duration}
		old := prevAt[StepRef{Stage: s.Stage, Pos: s.Pos}]
		if s.Reason == "parent step changed" {
			x.Because = changedBefore(cur, i, prevAt)
			if x.Because == nil {
				x.Causes = []Cause{{Kind: CauseOther, Summary: "an earlier step of stage " + s.Stage + " changed"}}
			}
		} else {
			x.Causes = stepCauses(prev, cur, s, old)
		}
		e.Steps = append(e.Steps, x)
	}
	// A parent that re-ran only because of its own parent points at the step that really changed.
	root := map[StepRef]*StepRef{}
	for i := range e.Steps {
		x := &e.Steps[i]
		if x.Because != nil {
			if r, ok := root[StepRef{Stage: x.Because.Stage, Pos: x.Because.Pos}]; ok {
				x.Because = r
			}
			root[StepRef{Stage: x.Stage, Pos: x.Pos}] = x.Because
		}
	}
	return e
}

// changedBefore is the step before cur.Steps[i] in its stage whose result differs from prev's: the
// nearest one that ran, or one served by the cache under another key than prev's (an input
// changed back to an older build's value).
func changedBefore(cur *Record, i int, prevAt map[StepRef]*Step) *StepRef {
	s := cur.Steps[i]
	for j := i - 1; j >= 0; j-- {
		p := cur.Steps[j]
		if p.Stage != s.Stage {
			continue
		}
		old := prevAt[StepRef{Stage: p.Stage, Pos: p.Pos}]
		if p.Result != ResultHit || old == nil || old.Key != p.Key {
			return &StepRef{Stage: p.Stage, Pos: p.Pos, Line: p.Line}
		}
	}
	return nil
}

// The reasons are internal/solver's explain() output, as the record keeps them: a record has no
// inputs to diff, and parsing the reason keeps explain in step with what progress printed.
var (
	baseReason  = regexp.MustCompile(`^base image (.+) now resolves to (\S+)$`)
	envReason   = regexp.MustCompile(`^build arg or env (.+) changed$`)
	mountReason = regexp.MustCompile(`^files in mount (.+) changed$`)
	urlReason   = regexp.MustCompile(`^content of (.+) changed$`)
	// The solver's file summary: "a.txt changed", "b added", "c removed", "file mode changed on
	// d", with " (+N files)" when more changed.
	fileReason = regexp.MustCompile(`^(?:file mode changed on (.+)|(.+) (?:changed|added|removed))(?: \(\+(\d+) files\))?$`)
)

// stepCauses turns a step's own miss reason into causes, with old values from prev.
func stepCauses(prev, cur *Record, s Step, old *Step) []Cause {
	if old != nil && old.Key != "" && old.Key == s.Key && s.Reason != "--no-cache" {
		// Same key as in prev: nothing it reads changed between the two builds.
		return []Cause{{Kind: CauseCacheGone, Summary: "same inputs as in build " + short(prev.ID) + "; its cache record was gone"}}
	}
	r := s.Reason
	switch {
	case r == "--no-cache":
		return []Cause{{Kind: CauseNoCache, Summary: "--no-cache"}}
	case r == "instruction changed", r == "instruction options changed":
		if old != nil && old.Text != s.Text {
			return textCauses(old.Text, s.Text)
		}
		return []Cause{{Kind: CauseInstruction, Summary: r}}
	case r == "no earlier build of this step", r == "no cache record (pruned or never stored)", r == "":
		// The solver had nothing to compare with; prev may have.
		if old != nil && old.Text != s.Text {
			return textCauses(old.Text, s.Text)
		}
		if r == "no earlier build of this step" || old == nil {
			return []Cause{{Kind: CauseNewStep, Summary: "no earlier build ran this step"}}
		}
		if r == "" {
			return []Cause{{Kind: CauseOther, Summary: "the record says nothing of why it ran"}}
		}
		return []Cause{{Kind: CauseCacheGone, Summary: r}}
	case r == "source files changed":
		return []Cause{{Kind: CauseFile, Summary: r}}
	}
	if m := baseReason.FindStringSubmatch(r); m != nil {
		c := Cause{Kind: CauseBase, Name: m[1], Old: baseDigest(prev, s.Stage, m[1]), New: m[2]}
		c.Summary = fmt.Sprintf("base image %s: %s → %s", c.Name, orUnknown(shortDigest(c.Old)), shortDigest(c.New))
		return []Cause{c}
	}
	if m := envReason.FindStringSubmatch(r); m != nil {
		var cs []Cause
		for _, name := range strings.Split(m[1], ", ") {
			ov, oldSet := prev.BuildArgs[name]
			nv, newSet := cur.BuildArgs[name]
			if (oldSet || newSet) && (ov != nv || oldSet != newSet) {
				cs = append(cs, Cause{Kind: CauseBuildArg, Name: name, Old: ov, New: nv,
					Summary: fmt.Sprintf("build arg %s: %s → %s", name, argValue(ov, oldSet), argValue(nv, newSet))})
				continue
			}
			c := Cause{Kind: CauseEnv, Name: name, Summary: "ARG or ENV " + name + " changed"}
			if prev.DockerfileDigest != cur.DockerfileDigest {
				c.Summary += " (in the Dockerfile)"
			}
			cs = append(cs, c)
		}
		return cs
	}
	if m := mountReason.FindStringSubmatch(r); m != nil {
		return []Cause{{Kind: CauseMount, Name: m[1], Summary: r}}
	}
	if m := urlReason.FindStringSubmatch(r); m != nil {
		return []Cause{{Kind: CauseURL, Name: m[1], Summary: r}}
	}
	if m := fileReason.FindStringSubmatch(r); m != nil {
		name := m[1] + m[2]
		more, _ := strconv.Atoi(m[3])
		c := Cause{Kind: CauseFile, Files: []string{name}, More: more, Summary: strings.TrimSuffix(r, fileSuffix(m[3]))}
		if more > 0 {
			c.Summary = fmt.Sprintf("%s (+%d more)", c.Summary, more)
		}
		return []Cause{c}
	}
	return []Cause{{Kind: CauseOther, Summary: r}}
}

func fileSuffix(more string) string {
	if more == "" {
		return ""
	}
	return " (+" + more + " files)"
}

// textCauses says how an instruction's text changed: a cache mount's, a secret's or an ssh agent's
// id when that is all that differs (progress shows RUN's --mount flags), else the text old → new.
func textCauses(old, cur string) []Cause {
	om, orest := mountIDs(old)
	cm, crest := mountIDs(cur)
	if orest == crest && len(om) == len(cm) {
		var cs []Cause
		for i := range om {
			if om[i] == cm[i] {
				continue
			}
			// A secret without target= lands at /run/secrets/ID: the id moves it, and that is
			// still only the id changing.
			if om[i].typ != cm[i].typ || om[i].target != cm[i].target {
				cs = nil
				break
			}
			kind, what := CauseCacheMount, "cache mount "+cm[i].target
			switch cm[i].typ {
			case "secret":
				kind, what = CauseSecret, "secret"
			case "ssh":
				kind, what = CauseSSH, "ssh"
			}
			cs = append(cs, Cause{Kind: kind, Name: cm[i].target, Old: om[i].id, New: cm[i].id,
				Summary: fmt.Sprintf("%s id %s → %s", what, orDash(om[i].id), orDash(cm[i].id))})
		}
		if len(cs) > 0 {
			return cs
		}
	}
	return []Cause{{Kind: CauseInstruction, Old: old, New: cur,
		Summary: fmt.Sprintf("instruction %q → %q", clip(oneLine(old), 40), clip(oneLine(cur), 40))}}
}

type mountID struct{ typ, target, id string }

// mountIDs picks the id of each cache, secret and ssh mount out of a RUN's text and returns the text
// without them, so two texts that differ only in those ids compare equal.
func mountIDs(text string) ([]mountID, string) {
	var ids []mountID
	var rest []string
	for _, f := range strings.Fields(text) {
		spec, ok := strings.CutPrefix(f, "--mount=")
		if !ok {
			rest = append(rest, f)
			continue
		}
		var m mountID
		var others []string
		for _, kv := range strings.Split(spec, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "type":
				m.typ = v
			case "id":
				m.id = v
				continue
			case "target", "dst", "destination":
				m.target = v
			}
			others = append(others, kv)
		}
		if m.typ != "cache" && m.typ != "secret" && m.typ != "ssh" {
			rest = append(rest, f)
			continue
		}
		if m.typ == "ssh" && m.id == "" {
			m.id = "default"
		}
		ids = append(ids, m)
		rest = append(rest, "--mount="+strings.Join(others, ","))
	}
	return ids, strings.Join(rest, " ")
}

// baseDigest is the digest prev resolved image to, for stage (or any stage, should the stages
// have been renamed): "" when prev's record predates bases or did not use the image.
func baseDigest(prev *Record, stage, image string) string {
	for _, b := range prev.Bases {
		if b.Stage == stage && b.Image == image {
			return b.Digest
		}
	}
	for _, b := range prev.Bases {
		if b.Image == image {
			return b.Digest
		}
	}
	return ""
}

// buildChanges are the differences between two builds as a whole.
func buildChanges(prev, cur *Record) []Cause {
	cs := []Cause{}
	if prev.Target != cur.Target {
		cs = append(cs, Cause{Kind: CauseTarget, Old: prev.Target, New: cur.Target,
			Summary: fmt.Sprintf("target %s → %s", orDash(prev.Target), orDash(cur.Target))})
	}
	if prev.DockerfileDigest != cur.DockerfileDigest {
		cs = append(cs, Cause{Kind: CauseDockerfile, Name: cur.Dockerfile, Old: prev.DockerfileDigest, New: cur.DockerfileDigest,
			Summary: "Dockerfile edited"})
	}
	var names []string
	for k := range prev.BuildArgs {
		names = append(names, k)
	}
	for k := range cur.BuildArgs {
		if _, ok := prev.BuildArgs[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		ov, oldSet := prev.BuildArgs[k]
		nv, newSet := cur.BuildArgs[k]
		if ov != nv || oldSet != newSet {
			cs = append(cs, Cause{Kind: CauseBuildArg, Name: k, Old: ov, New: nv,
				Summary: fmt.Sprintf("build arg %s: %s → %s", k, argValue(ov, oldSet), argValue(nv, newSet))})
		}
	}
	if len(prev.Bases) > 0 { // a record older than bases knows none: no news is no change then
		for _, b := range cur.Bases {
			if old := baseDigest(prev, b.Stage, b.Image); old != "" && old != b.Digest {
				cs = append(cs, Cause{Kind: CauseBase, Name: b.Image, Old: old, New: b.Digest,
					Summary: fmt.Sprintf("base image %s: %s → %s", b.Image, shortDigest(old), shortDigest(b.Digest))})
			}
		}
	}
	return cs
}

// WriteText prints the explanation for a person: one line per step with causes of its own, one
// line per group of steps that re-ran only because of it, so a 30-step build fits on a screen.
func (e *Explanation) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Build:\t%s  %s  %s\n", e.Build.ID, e.Build.Start.Local().Format(time.DateTime), e.Build.Outcome)
	fmt.Fprintf(tw, "Against:\t%s  %s  %s\n", e.Against.ID, e.Against.Start.Local().Format(time.DateTime), e.Against.Outcome)
	fmt.Fprintf(tw, "Dockerfile:\t%s, target %s\n", e.Build.Dockerfile, orDash(e.Build.Target))
	if e.Against.Dockerfile != e.Build.Dockerfile {
		fmt.Fprintf(tw, "\t(against %s)\n", e.Against.Dockerfile)
	}
	var changes []string
	for _, c := range e.Changes {
		changes = append(changes, c.Summary)
	}
	if len(changes) == 0 {
		changes = []string{"same Dockerfile, build args and base images"}
	}
	fmt.Fprintf(tw, "Changed:\t%s\n", strings.Join(changes, "; "))
	fmt.Fprintf(tw, "Ran:\t%d of %d steps\n", e.Ran, e.Total)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(e.Steps) == 0 {
		_, err := fmt.Fprintln(w, "\nEvery step was served from the cache.")
		return err
	}
	fmt.Fprintln(w)
	// Followers of each step, and runs of --no-cache steps, fold into one line.
	followers := map[StepRef][]int{}
	for _, x := range e.Steps {
		if x.Because != nil {
			k := StepRef{Stage: x.Because.Stage, Pos: x.Because.Pos}
			followers[k] = append(followers[k], x.Pos)
		}
	}
	// Rows are a step and its causes (aligned in columns) or a line of its own (a group).
	type row struct{ step, at, text, why, line string }
	var rows []row
	listed := map[StepRef]bool{}
	for i := 0; i < len(e.Steps); i++ {
		x := e.Steps[i]
		if x.Because != nil {
			if k := (StepRef{Stage: x.Because.Stage, Pos: x.Because.Pos}); !listed[k] {
				// Its cause ran no step of its own (a cache hit under another key than before):
				// the group goes where its first member is.
				listed[k] = true
				rows = append(rows, row{line: fmt.Sprintf("[%s] re-ran only because of step %d (line %d), a hit under a new key: steps %s",
					x.Stage, x.Because.Pos, x.Because.Line, ranges(followers[k]))})
			}
			if x.Result != ResultMiss {
				// The step the build failed on is worth its own line even when it only re-ran.
				rows = append(rows, row{step: fmt.Sprintf("[%s %d]", x.Stage, x.Pos), at: fmt.Sprintf("line %d", x.Line),
					text: clip(oneLine(x.Text), 40), why: fmt.Sprintf("re-ran because of step %d (%s)", x.Because.Pos, x.Result)})
			}
			continue
		}
		if len(x.Causes) == 1 && x.Causes[0].Kind == CauseNoCache {
			pos := []int{x.Pos}
			for i+1 < len(e.Steps) && e.Steps[i+1].Stage == x.Stage && e.Steps[i+1].Because == nil &&
				len(e.Steps[i+1].Causes) == 1 && e.Steps[i+1].Causes[0].Kind == CauseNoCache {
				i++
				pos = append(pos, e.Steps[i].Pos)
			}
			if len(pos) > 1 {
				rows = append(rows, row{line: fmt.Sprintf("[%s] --no-cache: steps %s", x.Stage, ranges(pos))})
				continue
			}
		}
		k := StepRef{Stage: x.Stage, Pos: x.Pos}
		listed[k] = true
		var cs []string
		for _, c := range x.Causes {
			cs = append(cs, c.Summary)
		}
		why := strings.Join(cs, "; ")
		if x.Result != ResultMiss {
			why += " (" + x.Result + ")"
		}
		rows = append(rows, row{step: fmt.Sprintf("[%s %d]", x.Stage, x.Pos), at: fmt.Sprintf("line %d", x.Line),
			text: clip(oneLine(x.Text), 40), why: why})
		if f := followers[k]; len(f) > 0 {
			rows = append(rows, row{line: fmt.Sprintf("  └ re-ran only because of step %d (line %d): steps %s", x.Pos, x.Line, ranges(f))})
		}
	}
	var w1, w2, w3 int
	for _, r := range rows {
		if r.line == "" {
			w1, w2, w3 = max(w1, len([]rune(r.step))), max(w2, len(r.at)), max(w3, len([]rune(r.text)))
		}
	}
	for _, r := range rows {
		var err error
		if r.line != "" {
			_, err = fmt.Fprintln(w, r.line)
		} else {
			_, err = fmt.Fprintf(w, "%s  %s  %s  %s\n", pad(r.step, w1), pad(r.at, w2), pad(r.text, w3), r.why)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func pad(s string, n int) string {
	return s + strings.Repeat(" ", max(0, n-len([]rune(s))))
}

// ranges prints sorted positions as "4–10, 12".
func ranges(pos []int) string {
	var parts []string
	for i := 0; i < len(pos); {
		j := i
		for j+1 < len(pos) && pos[j+1] == pos[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(pos[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d–%d", pos[i], pos[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

func argValue(v string, set bool) string {
	if !set {
		return "(unset)"
	}
	return strconv.Quote(v)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func orUnknown(s string) string {
	if s == "" {
		return "(not recorded)"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s, _, cut := strings.Cut(s, "\n")
	if cut {
		s += " …"
	}
	return s
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
