package contenthash

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// fuzzTree is the context every FuzzDockerignore input is matched against: nested directories,
// names with pattern metacharacters, dot files and a file that a .dockerignore would usually hide.
var fuzzTree = []string{
	"Dockerfile", ".dockerignore", ".env", "secret.key", "README.md",
	"a/b/c.txt", "a/b/d.log", "a/e.txt", "a/.hidden",
	"src/main.go", "src/main_test.go", "src/vendor/x/y.go",
	"node_modules/pkg/index.js", "node_modules/.bin/tool",
	"x/y/z/deep.txt", "sp ace/f", "br[a]ck/f", "star*/f", "q?/f", `back\slash/f`,
}

// A .dockerignore is what keeps secrets out of a build context, so whatever the file says, strata
// must never select a file that BuildKit's matcher excludes. Without "!" exceptions the selection
// must be exactly the files the matcher keeps (no needless drop either); with exceptions strata,
// like fsutil, may skip walking an excluded directory whose exceptions cannot match inside it, so
// only the first property is checked there. Parsing never panics.
func FuzzDockerignore(f *testing.F) {
	for _, s := range []string{
		"*.log\n", "a\n!a/e.txt\n", "**/*.go\n!src/main.go\n", "node_modules\n.env\n*.key\n",
		"# comment\n\n  a/b  \n/src\n", "*\n!Dockerfile\n!src\n", "**\n!**/*.txt\n",
		"x/**/deep.txt\n", "br\\[a\\]ck\n", "sp ace\n", "../a\n./src/../a\n", "!\n", "[\n",
		"a/b/\n!a/b/c.txt\n", "src/*/x\n!src/vendor\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	for _, p := range fuzzTree {
		abs := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(abs, []byte(p), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		patterns, err := ignorefile.ReadAll(bytes.NewReader(data))
		if err != nil {
			return
		}
		pm, err := patternmatcher.New(patterns)
		if err != nil {
			return // strata reports the same error (checked below)
		}
		var bad error
		for _, p := range fuzzTree {
			if _, err := excludedAlongPath(pm, p); err != nil {
				bad = err
			}
		}
		sel, err := (&Source{Root: dir, Ignore: patterns, EmptyWildcards: true}).Select(context.Background(), []string{"."}, nil)
		if bad != nil {
			// BuildKit's walk fails when a path reaches the bad pattern, and a pruned
			// directory's paths never do, so strata may succeed; a failure names the pattern.
			if err != nil && !strings.Contains(err.Error(), "pattern ") {
				t.Fatalf("patterns %q: the error does not name the pattern: %v", patterns, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("patterns %q: Select failed although the matcher accepts them: %v", patterns, err)
		}
		var got []string
		for _, fl := range sel.Files {
			if fl.Mode.IsRegular() {
				got = append(got, fl.Path)
			}
		}
		var want []string
		for _, p := range fuzzTree {
			excluded, err := excludedAlongPath(pm, p)
			if err != nil {
				t.Fatalf("matcher: %v", err)
			}
			if !excluded {
				want = append(want, p)
			} else if slices.Contains(got, p) {
				t.Fatalf("patterns %q: %s is excluded by the .dockerignore but was selected", patterns, p)
			}
		}
		if pm.Exclusions() {
			return
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("patterns %q:\nselected %q\nwant     %q", patterns, got, want)
		}
	})
}

// excludedAlongPath decides p as BuildKit's context walk does: each directory from the top down is
// matched with its parent's results (patternmatcher's MatchesUsingParentResults, which fsutil
// uses; it differs from MatchesOrParentMatches when a pattern repeats after an exception), but
// without pruning: every ancestor is matched, whatever the earlier ones said.
func excludedAlongPath(pm *patternmatcher.PatternMatcher, p string) (bool, error) {
	var info patternmatcher.MatchInfo
	var excluded bool
	parts := strings.Split(p, "/")
	for i := range parts {
		var err error
		excluded, info, err = pm.MatchesUsingParentResults(strings.Join(parts[:i+1], "/"), info)
		if err != nil {
			return false, err
		}
	}
	return excluded, nil
}
