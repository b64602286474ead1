package contenthash

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func matchPaths(s *Selection) []string {
	var out []string
	for _, m := range s.Matches {
		out = append(out, m.Path)
	}
	return out
}

// Follows BuildKit's testEmptyWildcard (dockerfile_copy_test.go): COPY and ADD sources are copied
// with AllowEmptyWildcard, so a wildcard may match nothing while a missing literal path fails.
func TestEmptyWildcards(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{"foo": "x", "debug.log": "x", "sub/a.txt": "x", "ignored/a.txt": "x"})
	s := &Source{Root: d, Ignore: []string{"*.log", "ignored"}, EmptyWildcards: true}

	got := sel(t, s, "foo", "nomatch*")
	if m := matchPaths(got); !slices.Equal(m, []string{"foo"}) {
		t.Errorf("foo nomatch*: matches %v", m)
	}
	for _, src := range []string{"nomatch*", "*.log", "sub/*.go", "foo/*", "*/nodir/*", "[xyz]"} {
		got, err := s.Select(context.Background(), []string{src}, nil)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if len(got.Matches) != 0 || len(got.Files) != 0 {
			t.Errorf("%s: selected %v %v", src, got.Matches, paths(got))
		}
	}
	// Only wildcards may come up empty; an escaped one is a literal name. The directory the
	// wildcards start from must exist (BuildKit: "lstat /nodir: no such file or directory").
	for _, src := range []string{"missing", "sub/missing.txt", `nomatch\*`, "debug.log", "nodir/*.txt", "sub/nodir/x?", "ignored/*.go"} {
		if _, err := s.Select(context.Background(), []string{"foo", src}, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", src, err)
		}
	}
	// Under --parents only a literal pivot must exist: without one the pattern filters the root.
	par := &Source{Root: d, EmptyWildcards: true, Parents: true}
	for _, src := range []string{"nodir/*.txt", "nodir*/./x*", "**/nomatch"} {
		if got, err := par.Select(context.Background(), []string{src}, nil); err != nil || len(got.Matches) != 0 {
			t.Errorf("--parents %s: %v %v", src, err, got)
		}
	}
	if _, err := par.Select(context.Background(), []string{"nodir/./x*"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("--parents with a missing pivot: %v, want ErrNotFound", err)
	}
	// Bind mounts keep the strict rule.
	if _, err := (&Source{Root: d}).Select(context.Background(), []string{"nomatch*"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("strict nomatch*: %v", err)
	}

	// The key still covers exactly what the wildcard matches: a file appearing under it is read.
	// (The source list itself is in the step's definition, so the digest need not name a
	// pattern that matched nothing.)
	ref := sel(t, s, "foo", "*.txt").Digest
	writeTree(t, d, map[string]string{"other.md": "x", "x.log": "x"})
	if sel(t, s, "foo", "*.txt").Digest != ref {
		t.Error("files the wildcard does not match changed the digest")
	}
	writeTree(t, d, map[string]string{"new.txt": "x"})
	if sel(t, s, "foo", "*.txt").Digest == ref {
		t.Error("a file the wildcard now matches did not change the digest")
	}
}

var deepTree = map[string]string{
	"x/a.txt":       "a",
	"x/b/c.txt":     "c",
	"x/b/d/e.txt":   "e",
	"x/b/d/f.md":    "f",
	"x/g.md":        "g",
	"x/b/d/z/e.txt": "deep",
	"y/h.txt":       "h",
	"top.txt":       "t",
	"x/link.txt":    "->b/c.txt",
}

// Follows testCopyRelativeParents (dockerfile_parents_test.go): a --parents source is an include
// pattern, where "**" spans any number of directories; in a plain COPY it is filepath.Match's
// two stars, one name (fsutil's ResolveWildcards).
func TestParentsDoubleStar(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, deepTree)
	parents := &Source{Root: d, EmptyWildcards: true, Parents: true}
	plain := &Source{Root: d, EmptyWildcards: true}

	for _, c := range []struct {
		s    *Source
		src  string
		want string
	}{
		{parents, "./x/**/*.txt", "x/a.txt,x/b/c.txt,x/b/d/e.txt,x/b/d/z/e.txt,x/link.txt"},
		{parents, "/x/**/*.txt", "x/a.txt,x/b/c.txt,x/b/d/e.txt,x/b/d/z/e.txt,x/link.txt"},
		{parents, "x/./b/**/*.txt", "x/b/c.txt,x/b/d/e.txt,x/b/d/z/e.txt"},
		{parents, "**/*.md", "x/b/d/f.md,x/g.md"},
		{parents, "*/**/h.txt", "y/h.txt"},
		{parents, "x/**/d", "x/b/d"},
		{parents, "x/**", "x/a.txt,x/b,x/g.md,x/link.txt"},
		{parents, "x/b/d/*.txt", "x/b/d/e.txt"},
		{parents, "**/nomatch", ""},
		{plain, "x/**/*.txt", "x/b/c.txt"},
		{plain, "**/*.txt", "x/a.txt,x/link.txt,y/h.txt"},
	} {
		got, err := c.s.Select(context.Background(), []string{c.src}, nil)
		if err != nil {
			t.Errorf("%s (parents %t): %v", c.src, c.s.Parents, err)
			continue
		}
		if m := strings.Join(matchPaths(got), ","); m != c.want {
			t.Errorf("%s (parents %t): matches %s, want %s", c.src, c.s.Parents, m, c.want)
		}
	}

	// A matched directory is taken whole, and the files of each match are selected with it.
	got := sel(t, parents, "x/**/d")
	if !got.Matches[0].IsDir || !slices.Contains(paths(got), "x/b/d/z/e.txt") {
		t.Errorf("x/**/d: %+v %v", got.Matches, paths(got))
	}

	// .dockerignore'd entries are neither matched nor walked into.
	ign := &Source{Root: d, EmptyWildcards: true, Parents: true, Ignore: []string{"x/b/d", "x/a.txt"}}
	if m := strings.Join(matchPaths(sel(t, ign, "x/**/*.txt")), ","); m != "x/b/c.txt,x/link.txt" {
		t.Errorf("with .dockerignore: %s", m)
	}
	ign.Ignore = []string{"x/b", "!x/b/d/z"}
	if m := matchPaths(sel(t, ign, "x/**/*.txt")); !slices.Contains(m, "x/b/d/z/e.txt") || slices.Contains(m, "x/b/c.txt") {
		t.Errorf("with a re-included directory: %s", m)
	}

	// The digest covers exactly the matched files, at any depth.
	ref := sel(t, parents, "x/**/*.txt").Digest
	writeTree(t, d, map[string]string{"y/new.txt": "x", "x/b/d/z/new.md": "x"})
	if sel(t, parents, "x/**/*.txt").Digest != ref {
		t.Error("unmatched files changed the digest")
	}
	if err := os.WriteFile(filepath.Join(d, "x/b/d/z/e.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if sel(t, parents, "x/**/*.txt").Digest == ref {
		t.Error("a change three levels down did not change the digest")
	}
	if sel(t, plain, "x/**/*.txt").Digest == sel(t, parents, "x/**/*.txt").Digest {
		t.Error("plain and --parents selections of x/**/*.txt agree")
	}
}

// A "**" walk lists only the trees below the pattern's literal prefix.
func TestParentsDoubleStarReadsOnlyItsTree(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, deepTree)
	readDir, _, _ := withHooks(t)
	sel(t, &Source{Root: d, EmptyWildcards: true, Parents: true}, "x/b/**/*.md")
	for _, p := range readDir.paths {
		if p != "x/b" && !strings.HasPrefix(p, "x/b/") {
			t.Errorf("listed %q", p)
		}
	}
}

// A .dockerignore pattern that does not compile fails the build naming the pattern, not the
// context path that happened to reach it first.
func TestDockerignoreBadPatternNamed(t *testing.T) {
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := (&Source{Root: d, Ignore: []string{"*.log", "a[", "!b"}}).Select(context.Background(), []string{"."}, nil)
	if err == nil || !strings.Contains(err.Error(), `pattern "a["`) {
		t.Fatalf("Select = %v, want an error naming pattern \"a[\"", err)
	}
}

// A cancelled context stops the walk at the next directory, with the context's error.
func TestSelectStopsWhenCancelled(t *testing.T) {
	root := t.TempDir()
	for i := range 200 {
		p := filepath.Join(root, fmt.Sprintf("d%03d", i), "f")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	read := 0
	hookReadDir = func(string) {
		mu.Lock()
		defer mu.Unlock()
		if read++; read == 10 {
			cancel()
		}
	}
	t.Cleanup(func() { hookReadDir = nil })
	_, err := (&Source{Root: root}).Select(ctx, []string{"."}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Select with its context cancelled: %v", err)
	}
	// Walkers already past their check finish their directory; none starts another.
	if read > 10+walkers() {
		t.Errorf("%d directories read, the cancel came at the 10th", read)
	}
}
