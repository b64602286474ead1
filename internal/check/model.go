package check

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// dockerfile is the parsed file: the raw lines (fixes edit lines, so formatting and comments
// survive) and the instructions grouped by stage.
type dockerfile struct {
	path     string
	lines    []string // lines[0] is line 1
	stages   []*stage
	fileOff  map[string]bool // rules disabled for the whole file
	firstIns int             // line of the first instruction
}

type stage struct {
	index   int
	name    string
	base    string
	parent  *stage // the earlier stage this one is FROM, if any
	from    *instr
	instrs  []*instr // after FROM
	counted bool     // FROM takes [1/n] in progress, as in BuildKit
}

func (s *stage) displayName() string {
	if s.name != "" {
		return s.name
	}
	return fmt.Sprintf("stage-%d", s.index)
}

type instr struct {
	node   *parser.Node
	cmd    any
	kind   string // lower-case keyword
	stage  *stage
	pos    int    // BuildKit progress position, 0 for instructions it does not show
	wd     string // WORKDIR in effect ("" when a variable makes it unknown)
	run    string // RUN: the shell text, heredoc bodies included
	mounts []*instructions.Mount
}

func (in *instr) step() Step {
	return Step{Stage: in.stage.displayName(), Pos: in.pos, Line: in.node.StartLine, Text: strings.TrimSpace(in.node.Original)}
}

// abs resolves a path against the instruction's WORKDIR; "" when unknown.
func (in *instr) abs(p string) string {
	if strings.HasPrefix(p, "/") {
		return path.Clean(p)
	}
	if in.wd == "" {
		return ""
	}
	return path.Join(in.wd, p)
}

var disableRe = regexp.MustCompile(`^#\s*strata-check-disable\s*=\s*(.+)$`)

func parse(name string, data []byte) (*dockerfile, error) {
	if name == "" {
		name = "Dockerfile"
	}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	df := &dockerfile{path: name, lines: strings.Split(strings.TrimSuffix(text, "\n"), "\n"), fileOff: map[string]bool{}}
	names := map[string]*stage{}
	var cur *stage
	for _, node := range res.AST.Children {
		if df.firstIns == 0 {
			df.firstIns = node.StartLine
		}
		v, err := instructions.ParseInstruction(node)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, node.StartLine, err)
		}
		in := &instr{node: node, cmd: v, kind: strings.ToLower(node.Value)}
		if st, ok := v.(*instructions.Stage); ok {
			cur = &stage{index: len(df.stages), name: strings.ToLower(st.Name), base: st.BaseName, from: in}
			if p := names[strings.ToLower(st.BaseName)]; p != nil {
				cur.parent = p
				in.wd = p.lastWD()
			} else {
				cur.counted = !strings.EqualFold(st.BaseName, "scratch")
				// an image may set its own WORKDIR, so relative paths stay unresolved until the
				// Dockerfile sets one
				if !cur.counted {
					in.wd = "/"
				}
			}
			if cur.counted {
				in.pos = 1
			}
			in.stage = cur
			df.stages = append(df.stages, cur)
			if cur.name != "" {
				names[cur.name] = cur
			}
			continue
		}
		if cur == nil {
			continue // global ARG
		}
		in.stage = cur
		in.wd = cur.lastWD()
		switch x := v.(type) {
		case *instructions.RunCommand:
			in.run = strings.Join(x.CmdLine, " ")
			for _, f := range x.Files {
				in.run += "\n" + f.Data
			}
			// Mounts are only parsed by Expand; an identity expander keeps variables as written.
			if err := x.Expand(func(w string) (string, error) { return w, nil }); err != nil {
				return nil, fmt.Errorf("%s:%d: %v", name, node.StartLine, err)
			}
			in.mounts = instructions.GetMounts(x)
		}
		switch in.kind {
		case "run", "copy", "add", "workdir":
			in.pos = cur.lastPos() + 1
		}
		cur.instrs = append(cur.instrs, in)
	}
	df.readDirectives()
	return df, nil
}

func (s *stage) lastPos() int {
	for i := len(s.instrs) - 1; i >= 0; i-- {
		if s.instrs[i].pos > 0 {
			return s.instrs[i].pos
		}
	}
	if s.counted {
		return 1
	}
	return 0
}

// lastWD is the WORKDIR after the stage's last instruction so far.
func (s *stage) lastWD() string {
	var last *instr
	if n := len(s.instrs); n > 0 {
		last = s.instrs[n-1]
	} else {
		last = s.from
	}
	if w, ok := last.cmd.(*instructions.WorkdirCommand); ok {
		if strings.Contains(w.Path, "$") {
			return ""
		}
		if strings.HasPrefix(w.Path, "/") {
			return path.Clean(w.Path)
		}
		if last.wd == "" {
			return ""
		}
		return path.Join(last.wd, w.Path)
	}
	return last.wd
}

func (df *dockerfile) readDirectives() {
	for i := 0; i < len(df.lines) && (df.firstIns == 0 || i+1 < df.firstIns); i++ {
		for _, id := range disabledIn(df.lines[i]) {
			df.fileOff[id] = true
		}
	}
}

func disabledIn(line string) []string {
	m := disableRe.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return nil
	}
	var ids []string
	for _, id := range strings.FieldsFunc(m[1], func(r rune) bool { return r == ',' || r == ' ' }) {
		if r, ok := RuleByID(id); ok {
			ids = append(ids, r.ID)
		} else if strings.EqualFold(id, "all") {
			ids = append(ids, "all")
		}
	}
	return ids
}

// disabled reports whether a disable comment covers rule id at line: file-wide ones at the top,
// or one in the comment block directly above the instruction.
func (df *dockerfile) disabled(id string, line int) bool {
	if df.fileOff[id] || df.fileOff["all"] {
		return true
	}
	for i := line - 2; i >= 0; i-- {
		l := strings.TrimSpace(df.lines[i])
		if !strings.HasPrefix(l, "#") {
			break
		}
		for _, d := range disabledIn(l) {
			if d == id || d == "all" {
				return true
			}
		}
	}
	return false
}

// copySources returns a COPY/ADD's sources, destination and whether it reads the build context.
func copySources(in *instr) (srcs []string, dest string, fromContext bool) {
	switch x := in.cmd.(type) {
	case *instructions.CopyCommand:
		return x.SourcePaths, x.DestPath, x.From == ""
	case *instructions.AddCommand:
		return x.SourcePaths, x.DestPath, true
	}
	return nil, "", false
}

// flagText is the instruction's flags as written, minus the ones named, for copying them onto
// a new instruction.
func flagText(in *instr, drop ...string) string {
	var out []string
next:
	for _, f := range in.node.Flags {
		for _, d := range drop {
			if strings.HasPrefix(f, "--"+d) {
				continue next
			}
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, " ") + " "
}
