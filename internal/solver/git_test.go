package solver

import (
	"context"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/graph"
)

func TestAddGitPickRef(t *testing.T) {
	out := "aaaa\tHEAD\nbbbb\trefs/heads/main\ncccc\trefs/tags/v1\ndddd\trefs/tags/v1^{}\neeee\trefs/heads/v1x\n"
	for ref, want := range map[string][2]string{
		"": {"aaaa", ""}, "main": {"bbbb", ""}, "refs/heads/main": {"bbbb", ""}, "v1": {"dddd", "cccc"}, "v1x": {"eeee", ""},
	} {
		c, tag, err := pickRef(out, ref)
		if err != nil || c != want[0] || tag != want[1] {
			t.Errorf("pickRef(%q) = %q %q %v, want %q %q", ref, c, tag, err, want[0], want[1])
		}
	}
	if _, _, err := pickRef(out, "nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("missing ref: %v", err)
	}
}

func TestAddGitRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:pw@example.com/x.git": "https://example.com/x.git",
		"https://example.com/x.git":      "https://example.com/x.git",
		"git@github.com:o/r.git":         "git@github.com:o/r.git",
		"ssh://git@example.com/r.git":    "ssh://git@example.com/r.git", "ssh://git:pw@example.com/r.git": "ssh://example.com/r.git", "https://tok@example.com/r.git": "https://example.com/r.git",
		"git://127.0.0.1:9418/r.git": "git://127.0.0.1:9418/r.git",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	g := gitInput{src: graph.GitSource{Remote: "https://u:pw@example.com/x.git", Ref: "main"}, commit: "c"}
	if strings.Contains(g.keyString(), "pw") || strings.Contains(g.name(), "pw") {
		t.Errorf("credentials in key %q or name %q", g.keyString(), g.name())
	}
}

func TestAddGitNoGit(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := resolveGit(context.Background(), graph.GitSource{Remote: "git://127.0.0.1:1/r.git", Ref: "main"})
	if err == nil || !strings.Contains(err.Error(), "Debian's git package") {
		t.Fatalf("without git: %v", err)
	}
}
