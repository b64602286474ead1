package check

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// rewrite collects line edits against the original file, so everything the fix does not touch
// (comments, continuation layout, blank lines) stays byte for byte.
type rewrite struct {
	df    *dockerfile
	edits []edit
	files map[string]string // context-relative path → new content (a .dockerignore)
}

// edit replaces lines start..end (1-based, inclusive); end == start-1 inserts before start.
type edit struct {
	start, end, seq int
	lines           []string
}

func (r *rewrite) add(start, end int, lines []string) {
	r.edits = append(r.edits, edit{start: start, end: end, seq: len(r.edits), lines: lines})
}

func (r *rewrite) replace(in *instr, lines ...string) {
	r.add(in.node.StartLine, in.node.EndLine, lines)
}
func (r *rewrite) remove(in *instr) { r.add(in.node.StartLine, in.node.EndLine, nil) }
func (r *rewrite) before(in *instr, lines ...string) {
	r.add(in.node.StartLine, in.node.StartLine-1, lines)
}
func (r *rewrite) after(in *instr, lines ...string) { r.add(in.node.EndLine+1, in.node.EndLine, lines) }
func (r *rewrite) source(in *instr) []string {
	return append([]string(nil), r.df.lines[in.node.StartLine-1:in.node.EndLine]...)
}

func (r *rewrite) apply() (string, error) {
	es := append([]edit(nil), r.edits...)
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].start != es[j].start {
			return es[i].start > es[j].start
		}
		ri, rj := es[i].end >= es[i].start, es[j].end >= es[j].start
		if ri != rj {
			return ri
		}
		return es[i].seq > es[j].seq
	})
	lines := append([]string(nil), r.df.lines...)
	lowest := len(lines) + 2
	for _, e := range es {
		if e.end >= lowest {
			return "", fmt.Errorf("overlapping edits at line %d", e.start)
		}
		lowest = e.start
		tail := append([]string(nil), lines[e.end:]...)
		lines = append(append(lines[:e.start-1], e.lines...), tail...)
	}
	return strings.Join(lines, "\n") + "\n", nil
}

// FixResult is what --fix would write.
type FixResult struct {
	Original   string
	Dockerfile string
	// Files are other files the fixes write, context-relative (a new .dockerignore).
	Files   map[string]string
	Applied []Finding
	// Skipped are fixable findings whose rewrite did not verify, with why.
	Skipped []string
}

// Fix applies every fix that verifies: the rewritten file parses and the finding's rule fires
// fewer times than before. Fixes are applied one at a time against a fresh check of the current
// text, so each works on exact line numbers. Findings silenced by disable comments are not fixed.
func Fix(o Options) (*FixResult, error) {
	res := &FixResult{Original: string(o.Dockerfile), Dockerfile: string(o.Dockerfile), Files: map[string]string{}}
	ctx, err := loadContext(o)
	if err != nil {
		return nil, err
	}
	tried := map[string]bool{}
	for range 100 {
		df, err := parse(o.Path, []byte(res.Dockerfile))
		if err != nil {
			return nil, err
		}
		rep := run(df, ctx)
		var pick *Finding
		for i := range rep.Findings {
			f := &rep.Findings[i]
			k := f.Rule + "\x00" + f.Affects.Stage + "\x00" + df.lines[f.Line-1] + "\x00" + f.Affects.Text
			if f.edit != nil && !tried[k] {
				tried[k] = true
				pick = f
				break
			}
		}
		if pick == nil {
			break
		}
		f := pick
		rw := &rewrite{df: df, files: map[string]string{}}
		if err := f.edit(rw); err != nil {
			res.skip(fmt.Sprintf("%s:%d: %s: %v", df.path, f.Line, f.Rule, err))
			continue
		}
		out, err := rw.apply()
		if err == nil {
			err = verify(o.Path, out, ctx, rw.files, f.Rule, count(rep, f.Rule))
		}
		if err != nil {
			res.skip(fmt.Sprintf("%s:%d: %s: fix not applied: %v", df.path, f.Line, f.Rule, err))
			continue
		}
		res.Dockerfile = out
		for p, c := range rw.files {
			res.Files[p] = c
			ctx = ctx.withIgnore(p, c)
		}
		res.Applied = append(res.Applied, *f)
	}
	return res, nil
}

func count(r *Report, rule string) int {
	n := 0
	for _, f := range r.Findings {
		if f.Rule == rule {
			n++
		}
	}
	return n
}

func verify(name, text string, ctx *buildContext, files map[string]string, rule string, before int) error {
	df, err := parse(name, []byte(text))
	if err != nil {
		return fmt.Errorf("rewritten file does not parse: %v", err)
	}
	for p, c := range files {
		ctx = ctx.withIgnore(p, c)
	}
	if n := count(run(df, ctx), rule); n >= before {
		return fmt.Errorf("%s still fires on the rewritten file", rule)
	}
	return nil
}

// withIgnore returns the context as it will be once the fix has written the ignore file.
func (c *buildContext) withIgnore(rel, content string) *buildContext {
	if c == nil || path.Base(rel) != ".dockerignore" {
		return c
	}
	n := *c
	n.ignorePath = c.full(rel)
	n.patterns = nil
	for _, l := range strings.Split(content, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			n.patterns = append(n.patterns, l)
		}
	}
	n.ignore = mustMatcher(n.patterns)
	return &n
}

func (r *FixResult) skip(msg string) {
	for _, s := range r.Skipped {
		if s == msg {
			return
		}
	}
	r.Skipped = append(r.Skipped, msg)
}
