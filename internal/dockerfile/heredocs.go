package dockerfile

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"unsafe"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// bigHeredoc is the body size from which parse hands BuildKit's parser a placeholder instead
// of the body. The parser grows a strings.Builder line by line for every body (about three
// times its size in allocations) and instructions.Parse keeps a Range per line of an
// instruction; below a MiB that costs nothing worth the scan.
const bigHeredoc = 1 << 20

// parsed is parser.Parse's result plus what parseHeredocs needs to keep instructions.Parse from
// building a Range per body line.
type parsed struct {
	*parser.Result
	// short holds, for each node whose heredoc body was substituted, the last line of the
	// instruction itself (before its first substituted body).
	short map[*parser.Node]int
}

// withShortLocations runs f with the nodes whose bodies were substituted ending at their
// instruction's own last line, so that the commands' Location() holds a few ranges rather than
// one per body line. strata reads only a command's first line; the AST is restored afterwards.
func (p *parsed) withShortLocations(f func()) {
	ends := make(map[*parser.Node]int, len(p.short))
	for n, end := range p.short {
		ends[n] = n.EndLine
		n.EndLine = end
	}
	defer func() {
		for n, end := range ends {
			n.EndLine = end
		}
	}()
	f()
}

// body is a heredoc body found by scanBodies: df[off:off+n], lines lines, read as the body
// of a heredoc named name (chomp: "<<-").
type body struct {
	off, n, lines int
	line          int // 1-based line of the body's first line in df
	name          string
	chomp         bool
}

// parseHeredocs is parser.Parse(df) without the parser holding a copy of each big heredoc body.
// Bodies of min bytes or more are replaced by one placeholder line, the placeholders are found in
// the result and replaced by the bodies as strings over df itself (df must not change afterwards),
// and line numbers after each body are moved back by the lines it lost. The substitution is
// checked rather than trusted: each placeholder must come back as the whole body of exactly one
// heredoc with the name and chomp flag the scan assumed, no line of the body may end that
// heredoc or be too long for the parser's scanner, and the parse must succeed. The parser's
// state when it reaches the placeholder is the one it has at the body in df (the bytes before
// are the same), so it would then have read the body's lines as that heredoc's content and
// carried on from the same terminator; anything else falls back to parsing df as it is.
func parseHeredocs(df []byte, min int) (*parsed, error) {
	plain := func() (*parsed, error) {
		res, err := parser.Parse(bytes.NewReader(df))
		return &parsed{Result: res}, err
	}
	if len(df) < min {
		return plain()
	}
	bodies := scanBodies(df, min)
	if len(bodies) == 0 {
		return plain()
	}
	token, err := placeholderToken(df)
	if err != nil {
		return plain()
	}
	var sb bytes.Buffer
	sb.Grow(len(df) - sumBodies(bodies) + len(bodies)*(len(token)+24))
	placeholders := make(map[string]int, len(bodies))
	// starts[i] is the placeholder's line in the text the parser reads.
	starts := make([]int, len(bodies))
	prev, lost := 0, 0
	for i, b := range bodies {
		sb.Write(df[prev:b.off])
		ph := token + "-" + strconv.Itoa(i) + "\n"
		sb.WriteString(ph)
		placeholders[ph] = i
		starts[i] = b.line - lost
		lost += b.lines - 1
		prev = b.off + b.n
	}
	sb.Write(df[prev:])
	res, err := parser.Parse(&sb)
	sb = bytes.Buffer{}
	if err != nil {
		return plain()
	}
	found := make([]bool, len(bodies))
	short := map[*parser.Node]int{}
	for _, n := range res.AST.Children {
		for j := range n.Heredocs {
			h := &n.Heredocs[j]
			i, ok := placeholders[h.Content]
			if !ok {
				if strings.Contains(h.Content, token) {
					return plain()
				}
				continue
			}
			b := bodies[i]
			if found[i] || h.Name != b.name || h.Chomp != b.chomp {
				return plain()
			}
			found[i] = true
			h.Content = unsafe.String(&df[b.off], b.n)
			if _, ok := short[n]; !ok {
				short[n] = starts[i] - 1
			}
		}
	}
	for _, f := range found {
		if !f {
			return plain()
		}
	}
	// A line after placeholder i moves down by the lines bodies 0..i lost.
	orig := func(l int) int {
		for i := len(bodies) - 1; i >= 0; i-- {
			if l > starts[i] {
				return l + cumLost(bodies, i)
			}
		}
		return l
	}
	var fix func(n *parser.Node)
	fix = func(n *parser.Node) {
		for ; n != nil; n = n.Next {
			n.StartLine, n.EndLine = orig(n.StartLine), orig(n.EndLine)
			for _, c := range n.Children {
				fix(c)
			}
		}
	}
	fix(res.AST)
	for i := range res.Warnings {
		if l := res.Warnings[i].Location; l != nil {
			l.Start.Line, l.End.Line = orig(l.Start.Line), orig(l.End.Line)
		}
	}
	for n, end := range short {
		short[n] = orig(end)
	}
	return &parsed{Result: res, short: short}, nil
}

// cumLost is how many lines bodies 0..i lose to their placeholders.
func cumLost(bodies []body, i int) int {
	n := 0
	for _, b := range bodies[:i+1] {
		n += b.lines - 1
	}
	return n
}

func sumBodies(bodies []body) int {
	n := 0
	for _, b := range bodies {
		n += b.n
	}
	return n
}

// placeholderToken is a random word that df does not contain.
func placeholderToken(df []byte) (string, error) {
	var r [16]byte
	for range 4 {
		if _, err := rand.Read(r[:]); err != nil {
			return "", err
		}
		t := "strata-heredoc-" + hex.EncodeToString(r[:])
		if !bytes.Contains(df, []byte(t)) {
			return t, nil
		}
	}
	return "", errors.New("no random token absent from the Dockerfile")
}

// maxBodyLine is the longest body line scanBodies lets through: longer ones make the parser
// fail with bufio.ErrTooLong, which the placeholder would hide.
const maxBodyLine = bufio.MaxScanTokenSize - 1024

// scanBodies finds the bodies of min bytes or more of heredocs that start on a one-line RUN,
// COPY or ADD, reading lines the way BuildKit's parser does as far as it can tell and stopping
// (keeping what it found before) at anything it does not model: a continued instruction with
// "<<" in it, ONBUILD with "<<", an unterminated heredoc. A Dockerfile with an escape
// directive is not scanned. parseHeredocs checks every body it returns against the parser's result.
func scanBodies(df []byte, min int) []body {
	if _, _, _, ok := parser.ParseDirective("escape", df); ok {
		return nil
	}
	var out []body
	pos, line := 0, 0 // pos: start of the next line; line: lines before it
	next := func() ([]byte, bool) {
		if pos >= len(df) {
			return nil, false
		}
		end := bytes.IndexByte(df[pos:], '\n')
		if end < 0 {
			end = len(df) - pos
		} else {
			end++
		}
		l := df[pos : pos+end]
		pos += end
		line++
		return l, true
	}
	for {
		l, ok := next()
		if !ok {
			return out
		}
		t := bytes.TrimSpace(l)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		if bytes.HasSuffix(t, []byte{'\\'}) {
			// A continued instruction: skip to its last line, unless heredocs may follow it.
			for {
				if bytes.Contains(l, []byte("<<")) {
					return out
				}
				if l, ok = next(); !ok {
					return out
				}
				t = bytes.TrimSpace(l)
				if len(t) > 0 && t[0] != '#' && !bytes.HasSuffix(t, []byte{'\\'}) {
					if bytes.Contains(l, []byte("<<")) {
						return out
					}
					break
				}
			}
			continue
		}
		if !bytes.Contains(l, []byte("<<")) {
			continue
		}
		word, _, _ := strings.Cut(string(t), " ")
		switch strings.ToLower(strings.TrimSpace(word)) {
		case "run", "copy", "add":
		default:
			if strings.EqualFold(word, "onbuild") {
				return out
			}
			continue
		}
		for _, h := range heredocsFromLine(string(t)) {
			b := body{off: pos, line: line + 1, name: h.Name, chomp: h.Chomp}
			terminated, tooLong := false, false
			for {
				bl, ok := next()
				if !ok {
					break
				}
				end := bytes.TrimRight(bl, "\r\n")
				if h.Chomp {
					end = bytes.TrimLeft(end, "\t")
				}
				if string(end) == h.Name {
					terminated = true
					break
				}
				tooLong = tooLong || len(bl) > maxBodyLine
				b.n += len(bl)
				b.lines++
			}
			if !terminated {
				return out
			}
			if b.n >= min && b.lines > 0 && !tooLong {
				out = append(out, b)
			}
		}
	}
}

// heredocsFromLine is the parser's own (unexported) heredocsFromLine: the heredocs an
// instruction line opens, in order.
func heredocsFromLine(line string) []parser.Heredoc {
	lex := shell.NewLex('\\')
	lex.RawQuotes = true
	lex.RawEscapes = true
	lex.SkipUnsetEnv = true
	words, _ := lex.ProcessWords(line, noEnv{})
	var docs []parser.Heredoc
	for _, w := range words {
		if h, err := parser.ParseHeredoc(w); err == nil && h != nil {
			docs = append(docs, *h)
		}
	}
	return docs
}

type noEnv struct{}

func (noEnv) Get(string) (string, bool) { return "", false }
func (noEnv) Keys() []string            { return nil }
