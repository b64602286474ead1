// Package subrequest answers buildx's `--call targets` and `--call outline` from a Dockerfile
// alone, without building: the stages a --target can name, and the build args, secrets and SSH
// sockets a target uses. Results and their text mirror BuildKit's frontend/subrequests.
package subrequest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Target is one stage, as BuildKit's targets subrequest lists it.
type Target struct {
	Name        string `json:"name,omitempty"`
	Default     bool   `json:"default,omitempty"`
	Description string `json:"description,omitempty"`
	Base        string `json:"base,omitempty"`
	Platform    string `json:"platform,omitempty"`
	Line        int    `json:"line,omitempty"`
}

// Targets lists every stage; the last one is what a build without --target makes.
func Targets(df []byte) ([]Target, error) {
	stages, _, _, err := parse(df)
	if err != nil {
		return nil, err
	}
	var out []Target
	for i, s := range stages {
		out = append(out, Target{
			Name: s.Name, Description: s.DocComment, Default: i == len(stages)-1,
			Base: s.BaseName, Platform: s.Platform, Line: line(s.Location),
		})
	}
	return out, nil
}

// PrintTargets writes BuildKit's text form: TARGET and DESCRIPTION columns.
func PrintTargets(w io.Writer, ts []Target) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprint(tw, "TARGET\tDESCRIPTION\n")
	for _, t := range ts {
		name := t.Name
		if name == "" && t.Default {
			name = "(default)"
		} else if t.Default {
			name += " (default)"
		}
		fmt.Fprintf(tw, "%s\t%s\n", name, t.Description)
	}
	return tw.Flush()
}

// Outline is what a target needs from the person building it.
type Outline struct {
	Name        string   `json:"name,omitempty"`
	Description string   `json:"description,omitempty"`
	Args        []Arg    `json:"args,omitempty"`
	Secrets     []Secret `json:"secrets,omitempty"`
	SSH         []Secret `json:"ssh,omitempty"`
}

// Arg is a build arg the target reads: its value as the build would see it and the comment
// above its ARG.
type Arg struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Value       string `json:"value,omitempty"`
	Line        int    `json:"line,omitempty"`
}

// Secret is a RUN --mount=type=secret (or ssh) id the target mounts.
type Secret struct {
	Name     string `json:"name"`
	Required bool   `json:"required,omitempty"`
	Line     int    `json:"line,omitempty"`
}

// OutlineOf reads the stages target (default: the last) needs, as BuildKit's outline does: the
// ARGs declared in them, the global ARGs their FROM lines use, and the secret and SSH mounts of
// their RUN steps, each once, in Dockerfile order.
func OutlineOf(df []byte, target string, buildArgs map[string]string) (*Outline, error) {
	stages, metaArgs, escape, err := parse(df)
	if err != nil {
		return nil, err
	}
	idx := len(stages) - 1
	if target != "" {
		idx = slices.IndexFunc(stages, func(s instructions.Stage) bool { return strings.EqualFold(s.Name, target) })
		if idx < 0 {
			return nil, fmt.Errorf("target stage %q could not be found", target)
		}
	}
	lex := shell.NewLex(escape)
	global := map[string]string{}
	globalArgs := map[string]Arg{}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			v, set := buildArgs[kv.Key]
			if !set && kv.Value != nil {
				v, _, _ = lex.ProcessWord(*kv.Value, envMap(global))
				set = true
			}
			if set {
				global[kv.Key] = v
			}
			globalArgs[kv.Key] = Arg{Name: kv.Key, Description: kv.DocComment, Value: v, Line: line(a.Location())}
		}
	}

	o := &Outline{Name: stages[idx].Name, Description: stages[idx].DocComment}
	seenArg, seenSecret, seenSSH := map[string]bool{}, map[string]bool{}, map[string]bool{}
	addArg := func(a Arg) {
		if !seenArg[a.Name] {
			seenArg[a.Name] = true
			o.Args = append(o.Args, a)
		}
	}
	byName := func(name string) int {
		if n, err := strconv.Atoi(name); err == nil && n >= 0 && n < len(stages) {
			return n
		}
		return slices.IndexFunc(stages, func(s instructions.Stage) bool { return s.Name != "" && strings.EqualFold(s.Name, name) })
	}
	done := map[int]bool{}
	var visit func(i int)
	visit = func(i int) {
		if done[i] {
			return
		}
		done[i] = true
		s := stages[i]
		res, _ := lex.ProcessWordWithMatches(s.BaseName, envMap(global))
		for _, w := range []string{s.BaseName, s.Platform} {
			r, _ := lex.ProcessWordWithMatches(w, envMap(global))
			for k := range r.Matched {
				if a, ok := globalArgs[k]; ok {
					addArg(a)
				}
			}
			for k := range r.Unmatched {
				if a, ok := globalArgs[k]; ok {
					addArg(a)
				}
			}
		}
		if b := byName(res.Result); b >= 0 && b < i {
			visit(b)
		}
		for _, c := range s.Commands {
			switch c := c.(type) {
			case *instructions.ArgCommand:
				for _, kv := range c.Args {
					a := Arg{Name: kv.Key, Description: kv.DocComment, Line: line(c.Location())}
					if v, ok := buildArgs[kv.Key]; ok {
						a.Value = v
					} else if kv.Value != nil {
						a.Value = *kv.Value
					} else if g, ok := globalArgs[kv.Key]; ok {
						a.Value = g.Value
						if a.Description == "" {
							a.Description = g.Description
						}
					}
					addArg(a)
				}
			case *instructions.CopyCommand:
				if c.From != "" {
					if b := byName(c.From); b >= 0 && b < i {
						visit(b)
					}
				}
			case *instructions.RunCommand:
				// Mount flags are parsed when expanded; the ids as written are what the
				// outline names.
				if err := c.Expand(func(w string) (string, error) { return w, nil }); err != nil {
					continue
				}
				for _, m := range instructions.GetMounts(c) {
					if m.From != "" {
						if b := byName(m.From); b >= 0 && b < i {
							visit(b)
						}
					}
					switch m.Type {
					case instructions.MountTypeSecret:
						id := m.CacheID
						if id == "" {
							id = path.Base(m.Target)
						}
						if !seenSecret[id] {
							seenSecret[id] = true
							o.Secrets = append(o.Secrets, Secret{Name: id, Required: m.Required, Line: line(c.Location())})
						}
					case instructions.MountTypeSSH:
						id := m.CacheID
						if id == "" {
							id = "default"
						}
						if !seenSSH[id] {
							seenSSH[id] = true
							o.SSH = append(o.SSH, Secret{Name: id, Required: m.Required, Line: line(c.Location())})
						}
					}
				}
			}
		}
	}
	visit(idx)
	slices.SortStableFunc(o.Args, func(a, b Arg) int { return a.Line - b.Line })
	slices.SortStableFunc(o.Secrets, func(a, b Secret) int { return a.Line - b.Line })
	slices.SortStableFunc(o.SSH, func(a, b Secret) int { return a.Line - b.Line })
	return o, nil
}

// PrintOutline writes BuildKit's text form of an outline.
func PrintOutline(w io.Writer, o *Outline) error {
	var buf bytes.Buffer
	if o.Name != "" || o.Description != "" {
		tw := tabwriter.NewWriter(&buf, 0, 0, 1, ' ', 0)
		name := o.Name
		if name == "" {
			name = "(default)"
		}
		fmt.Fprintf(tw, "TARGET:\t%s\n", name)
		if o.Description != "" {
			fmt.Fprintf(tw, "DESCRIPTION:\t%s\n", o.Description)
		}
		tw.Flush()
		fmt.Fprintln(&buf)
	}
	if len(o.Args) > 0 {
		tw := tabwriter.NewWriter(&buf, 0, 0, 3, ' ', 0)
		fmt.Fprint(tw, "BUILD ARG\tVALUE\tDESCRIPTION\n")
		for _, a := range o.Args {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Name, a.Value, a.Description)
		}
		tw.Flush()
		fmt.Fprintln(&buf)
	}
	for _, l := range []struct {
		head string
		list []Secret
	}{{"SECRET", o.Secrets}, {"SSH", o.SSH}} {
		if len(l.list) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(&buf, 0, 0, 3, ' ', 0)
		fmt.Fprintf(tw, "%s\tREQUIRED\n", l.head)
		for _, s := range l.list {
			req := ""
			if s.Required {
				req = "true"
			}
			fmt.Fprintf(tw, "%s\t%s\n", s.Name, req)
		}
		tw.Flush()
		fmt.Fprintln(&buf)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// JSON writes v indented, as BuildKit's result.json.
func JSON(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

func parse(df []byte) ([]instructions.Stage, []instructions.ArgCommand, rune, error) {
	res, err := parser.Parse(bytes.NewReader(df))
	if err != nil {
		return nil, nil, 0, err
	}
	stages, metaArgs, err := instructions.Parse(res.AST, linter.New(&linter.Config{}))
	if err != nil {
		return nil, nil, 0, err
	}
	if len(stages) == 0 {
		return nil, nil, 0, fmt.Errorf("dockerfile contains no stages to build")
	}
	return stages, metaArgs, res.EscapeToken, nil
}

func line(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

type envMap map[string]string

func (e envMap) Get(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (e envMap) Keys() []string {
	var ks []string
	for k := range e {
		ks = append(ks, k)
	}
	return ks
}
