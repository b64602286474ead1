package dockerfile

import (
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// verbatim may skip the raw heredoc lexer only where the lexer would return the body unchanged.
func TestVerbatimMatchesLexer(t *testing.T) {
	raw := shell.NewLex('\\')
	raw.SkipProcessQuotes = true
	env := shell.EnvsFromSlice([]string{"A=1"})
	for _, body := range []string{
		"plain text\nwith 'quotes' and \"double\" # and ; | & * ? ~ { } ( ) \t\r\n",
		"ünïcödé ✓\n", "", "\n\n",
		"$A\n", "${A}", "a\\\nb", "\\$A", "<<EOF\n", "bad \xff byte",
	} {
		w, _, err := raw.ProcessWord(body, env)
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		if verbatim(body) && w != body {
			t.Errorf("%q is verbatim but the lexer gives %q", body, w)
		}
	}
}
