package dockerfile

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unsafe"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"golang.org/x/tools/txtar"
)

// heredocCorpus is every Dockerfile of the conformance cases and the real-world testdata, plus
// variants and hand-written cases aimed at what the placeholder scan does not model.
func heredocCorpus(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	cases, _ := filepath.Glob("../../test/conformance/cases/*.txtar")
	if len(cases) < 100 {
		t.Fatalf("found %d conformance cases, want the suite's", len(cases))
	}
	for _, p := range cases {
		ar, err := txtar.ParseFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range ar.Files {
			if strings.HasSuffix(f.Name, "Dockerfile") {
				out[filepath.Base(p)+"/"+f.Name] = bytes.ReplaceAll(f.Data, []byte("{{BASE}}"), []byte("busybox"))
			}
		}
	}
	real, _ := filepath.Glob("testdata/realworld/*.Dockerfile")
	for _, p := range real {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = b
	}
	for name, df := range maps.Clone(out) {
		if !bytes.Contains(df, []byte("<<")) {
			continue
		}
		out[name+"/crlf"] = bytes.ReplaceAll(df, []byte("\n"), []byte("\r\n"))
		out[name+"/escape"] = append([]byte("# escape=`\n"), df...)
		out[name+"/twice"] = append(append(append([]byte{}, df...), '\n'), df...)
	}
	hand := map[string]string{
		"basic":            "FROM busybox\nRUN <<EOF\necho a\nEOF\nRUN echo after\n",
		"quoted":           "FROM busybox\nCOPY <<'EOF' /a\n$X\nEOF\nCOPY <<\"EOF\" /b\n$Y\nEOF\nRUN echo after\n",
		"chomp":            "FROM busybox\nRUN <<-EOF\n\techo a\n\t\tEOF\nRUN echo after\n",
		"not-chomp-tabs":   "FROM busybox\nRUN <<EOF\n\techo a\n\tEOF\nEOF\nRUN echo after\n",
		"two-on-a-line":    "FROM busybox\nCOPY <<A <<B /dst/\na1\na2\nA\nb1\nB\nRUN echo after\n",
		"fd":               "FROM busybox\nRUN 3<<EOF cat /proc/self/fd/3\nhi\nEOF\n",
		"cmd-heredoc":      "FROM busybox\nRUN cat <<EOF > /x\nhi\nEOF\nRUN echo after\n",
		"continuation":     "FROM busybox\nRUN <<EOF \\\n  cat\nbody\nEOF\nRUN echo after\n",
		"cont-before":      "FROM busybox\nRUN echo a \\\n  b\nRUN <<EOF\nbody\nEOF\nRUN echo after\n",
		"cont-comment":     "FROM busybox\nRUN echo a \\\n# RUN <<EOF\n  b\nRUN <<EOF\nbody\nEOF\n",
		"empty-cont":       "FROM busybox\nRUN <<EOF\nbody\nEOF\nRUN echo a \\\n\n  b\n",
		"nested-lookalike": "FROM busybox\nRUN <<OUT\nRUN <<EOF\nOUT\nEOF\nRUN echo after\n",
		"body-like-instr":  "FROM busybox\nRUN <<EOF\nFROM x\nRUN <<IN\nEOF\nIN\n",
		"empty-body":       "FROM busybox\nCOPY <<EOF /empty\nEOF\nRUN echo after\n",
		"unterminated":     "FROM busybox\nRUN <<EOF\necho a\n",
		"bad-after":        "FROM busybox\nRUN <<EOF\necho a\nEOF\nNOPE x\n",
		"bad-in-instr":     "FROM busybox\nRUN <<EOF\necho a\nEOF\nCOPY --nope=1 a b\n",
		"no-newline-end":   "FROM busybox\nRUN <<EOF\necho a\nEOF",
		"cr-terminator":    "FROM busybox\nRUN <<EOF\necho a\nEOF\r\r\nRUN echo after\n",
		"onbuild":          "FROM busybox\nONBUILD RUN <<EOF\necho a\nEOF\nRUN echo after\n",
		"add":              "FROM busybox\nADD <<EOF /a\nx\nEOF\n",
		"lowercase":        "from busybox\nrun <<EOF\nx\nEOF\ncopy <<EOF /a\ny\nEOF\n",
		"tab-after-instr":  "FROM busybox\nRUN\t<<EOF\nx\nEOF\n",
		"long-line":        "FROM busybox\nRUN <<EOF\n#" + strings.Repeat("x", 70000) + "\nEOF\nRUN echo after\n",
		"placeholder-like": "FROM busybox\nRUN <<EOF\nstrata-heredoc-0\nEOF\n",
		"bom":              "\ufeffFROM busybox\nRUN <<EOF\nx\nEOF\n",
		"dash-name":        "FROM busybox\nRUN <<-\"E O\"\nx\n\tE O\nRUN echo after\n",
		"many": "FROM busybox\n" + strings.Repeat("RUN <<EOF\na\nb\nEOF\n# c\n\nCOPY <<X <<Y /d/\n1\nX\n2\n3\nY\n", 20) +
			"RUN echo a \\\n\n b\n",
	}
	for name, df := range hand {
		out["hand/"+name] = []byte(df)
	}
	return out
}

// TestParseSubstitutedHeredocs parses every Dockerfile of the corpus as BuildKit's parser does and
// with every heredoc body replaced by a placeholder (threshold 0), and wants the same result:
// AST (values, heredoc names, contents, expand and chomp flags, line ranges), warnings and errors,
// and after instructions.Parse the same commands, first lines and errors.
func TestParseSubstitutedHeredocs(t *testing.T) {
	substituted := 0
	for name, df := range heredocCorpus(t) {
		sub, err := compareParses(df)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if sub {
			substituted++
		}
	}
	// Most of the corpus must have gone through the placeholders, or the test proves nothing.
	if substituted < 120 {
		t.Errorf("%d Dockerfiles parsed with placeholders, want at least 120", substituted)
	}
}

// FuzzParseSubstitutedHeredocs looks for a Dockerfile whose parse with placeholders differs from
// BuildKit's: go test -run '^$' -fuzz FuzzParseSubstitutedHeredocs -parallel 1 ./internal/dockerfile
func FuzzParseSubstitutedHeredocs(f *testing.F) {
	for name, df := range heredocCorpus(f) {
		if strings.HasPrefix(name, "hand/") || bytes.Contains(df, []byte("<<")) {
			f.Add(df)
		}
	}
	f.Fuzz(func(t *testing.T, df []byte) {
		if _, err := compareParses(df); err != nil {
			t.Error(err)
		}
	})
}

// compareParses parses df as BuildKit does and with every heredoc body replaced by a placeholder
// (threshold 0) and reports the first difference: AST (values, heredoc names, contents, expand
// and chomp flags, line ranges), warnings and errors, and after instructions.Parse the same
// commands, first lines and errors. sub says whether placeholders were used.
func compareParses(df []byte) (sub bool, _ error) {
	want, werr := parser.Parse(bytes.NewReader(df))
	got, gerr := parseHeredocs(df, 0)
	if errString(werr) != errString(gerr) || !reflect.DeepEqual(locations(werr), locations(gerr)) {
		return false, fmt.Errorf("error %q, want %q", errString(gerr), errString(werr))
	}
	if werr != nil {
		return false, nil
	}
	sub = got.short != nil
	if !reflect.DeepEqual(want, got.Result) {
		return sub, fmt.Errorf("parse results differ:\n got %s\nwant %s", dumpResult(got.Result), dumpResult(want))
	}
	ws, wargs, werr := instructions.Parse(want.AST, linter.New(&linter.Config{}))
	var gs []instructions.Stage
	var gargs []instructions.ArgCommand
	got.withShortLocations(func() { gs, gargs, gerr = instructions.Parse(got.AST, linter.New(&linter.Config{})) })
	if errString(werr) != errString(gerr) {
		return sub, fmt.Errorf("instructions error %q, want %q", errString(gerr), errString(werr))
	}
	if fmt.Sprint(commands(ws)) != fmt.Sprint(commands(gs)) || len(wargs) != len(gargs) {
		return sub, fmt.Errorf("commands\n got %v\nwant %v", commands(gs), commands(ws))
	}
	if !reflect.DeepEqual(want.AST, got.AST) {
		return sub, errors.New("withShortLocations did not restore the AST")
	}
	return sub, nil
}

// TestParseSubstitutesBigBodiesOnly checks the threshold and that the body is df's own bytes.
func TestParseSubstitutesBigBodiesOnly(t *testing.T) {
	big := strings.Repeat("echo line\n", 1000)
	df := []byte("FROM busybox\nRUN <<EOF\nsmall\nEOF\nCOPY <<EOF /big\n" + big + "EOF\nRUN echo after\n")
	p, err := parseHeredocs(df, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.short) != 1 {
		t.Fatalf("%d nodes substituted, want the COPY only", len(p.short))
	}
	c := p.AST.Children[2]
	if got := c.Heredocs[0].Content; got != big {
		t.Fatalf("COPY body has %d bytes, want %d", len(got), len(big))
	}
	off := bytes.Index(df, []byte(big))
	if unsafe.StringData(c.Heredocs[0].Content) != &df[off] {
		t.Error("the body is a copy, want a string over the Dockerfile's bytes")
	}
	if c.StartLine != 5 || c.EndLine != 1006 || p.AST.Children[3].StartLine != 1007 {
		t.Errorf("lines %d-%d, next %d; want 5-1006, 1007", c.StartLine, c.EndLine, p.AST.Children[3].StartLine)
	}
}

func commands(stages []instructions.Stage) []string {
	var out []string
	for _, s := range stages {
		out = append(out, fmt.Sprintf("stage %s line %d", s.Name, locLine(s.Location)))
		for _, c := range s.Commands {
			desc := fmt.Sprintf("%s line %d", c.Name(), locLine(c.Location()))
			switch x := c.(type) {
			case *instructions.RunCommand:
				desc += fmt.Sprintf(" %q %+v", x.CmdLine, x.Files)
			case *instructions.CopyCommand:
				desc += fmt.Sprintf(" %+v", x.SourceContents)
			case *instructions.AddCommand:
				desc += fmt.Sprintf(" %+v", x.SourceContents)
			case *instructions.OnbuildCommand:
				desc += fmt.Sprintf(" %q", x.Expression)
			}
			out = append(out, desc)
		}
	}
	return out
}

// didYouMean is BuildKit's suggestion for an unknown instruction, which picks among equally
// close names in map order: two parses of the same text differ there.
var didYouMean = regexp.MustCompile(` \(did you mean \w+\?\)`)

func errString(err error) string {
	if err == nil {
		return ""
	}
	return didYouMean.ReplaceAllString(err.Error(), "")
}

func locations(err error) [][]parser.Range {
	var le *parser.LocationError
	if errors.As(err, &le) {
		return le.Locations
	}
	return nil
}

func dumpResult(r *parser.Result) string {
	var sb strings.Builder
	for _, n := range r.AST.Children {
		fmt.Fprintf(&sb, "\n  %d-%d %s %+v", n.StartLine, n.EndLine, n.Original, n.Heredocs)
	}
	fmt.Fprintf(&sb, "\n  warnings %+v", r.Warnings)
	return sb.String()
}

// TestSummarizeHeredoc holds the first-line summary to what BuildKit's (split the whole body
// into lines) gives.
func TestSummarizeHeredoc(t *testing.T) {
	buildkit := func(doc string) string {
		doc = strings.TrimSpace(doc)
		lines := strings.Split(strings.ReplaceAll(doc, "\r\n", "\n"), "\n")
		if len(lines) > 1 {
			return lines[0] + "..."
		}
		return lines[0]
	}
	for _, doc := range []string{"", "a", "a\n", "  a b  \n", "a\nb\n", "a\r\nb", "a\r\r\nb", "a\rb\nc", "\r\n\r\nx\ny", "#!/bin/sh\necho\n"} {
		if got, want := summarizeHeredoc(doc), buildkit(doc); got != want {
			t.Errorf("summarizeHeredoc(%q) = %q, want %q", doc, got, want)
		}
	}
}
