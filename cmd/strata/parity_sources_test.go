package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// parityTree lists the regular files and directories under root, relative, "/"-terminated for
// directories.
func parityTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func parityAbsent(t *testing.T, root string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists (%v), want absent", p, err)
		}
	}
}

// Follows testEmptyWildcard (dockerfile_copy_test.go) and dockerfile2llb's COPY, which copies
// every local source, context or stage, with AllowEmptyWildcard: a wildcard that matches nothing
// copies nothing (not even the destination directory), while a missing literal path, or a
// missing directory the wildcard would list, fails.
func TestParityEmptyWildcard(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("emptywild", map[string]string{
		"Dockerfile": `FROM {{BASE}} AS src
RUN mkdir /data && echo one > /data/one
FROM scratch
COPY foo nomatch* /
COPY nomatch* /none/
COPY --from=src /data/one /data/nomatch* /fromstage/
COPY --from=src /data/nomatch* /fromstage-none/
ADD foo nomatch? /added/
`,
		"foo": "contents0",
	})
	out := filepath.Join(e.dir, "out")
	e.build("-o", "type=local,dest="+out, ctx)
	if got := readFile(t, filepath.Join(out, "foo")); got != "contents0" {
		t.Errorf("foo: %q", got)
	}
	if got := readFile(t, filepath.Join(out, "fromstage/one")); got != "one\n" {
		t.Errorf("fromstage/one: %q", got)
	}
	if got := readFile(t, filepath.Join(out, "added/foo")); got != "contents0" {
		t.Errorf("added/foo: %q", got)
	}
	parityAbsent(t, out, "none", "fromstage-none")

	for name, df := range map[string]string{
		"context": "FROM scratch\nCOPY foo nomatch* missing /\n",
		"stage":   "FROM {{BASE}} AS src\nFROM scratch\nCOPY --from=src /bin/busybox /missing /\n",
		// BuildKit lists the directory the wildcard starts from: "lstat /nodir: no such file".
		"wildcard-dir": "FROM scratch\nCOPY nodir/*.txt /x/\n",
	} {
		ctx := e.project("missing-"+name, map[string]string{"Dockerfile": df, "foo": "x"})
		r := e.buildFail(ctx)
		if !r.has("not found") || !r.has("COPY") {
			t.Errorf("%s: a missing literal source must fail naming it and the line:\n%s", name, r.out)
		}
	}
}

// An empty wildcard is still an input: a file that starts to match it must invalidate the step,
// and files it does not match must not.
func TestParityEmptyWildcardCacheKey(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("emptywild-key", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY foo *.txt /dst/\nRUN ls /dst > /listing\n",
		"foo":        "x",
	})
	e.build(ctx)
	if err := os.WriteFile(filepath.Join(ctx, "other.md"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.build(ctx); len(missed(r.out)) != 0 {
		t.Errorf("an unmatched file made %v miss:\n%s", missed(r.out), r.out)
	}
	if err := os.WriteFile(filepath.Join(ctx, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(e.dir, "out")
	r := e.build("-o", "type=local,dest="+out, ctx)
	if reason := missReason(r.out, "COPY foo *.txt"); reason != "a.txt added" {
		t.Errorf("COPY miss reason %q, want \"a.txt added\":\n%s", reason, r.out)
	}
	if got := readFile(t, filepath.Join(out, "listing")); got != "a.txt\nfoo\n" {
		t.Errorf("listing %q", got)
	}
}

// Follows testCopyRelativeParents and testCopyParentsMissingDirectory
// (dockerfile_parents_test.go): a --parents source is an include pattern, where "**" spans any
// number of directories (none included), from the root or from the "/./" pivot; a pattern that
// matches nothing still creates the destination. Without --parents, "**" is filepath.Match's
// two stars: one name (fsutil's ResolveWildcards).
func TestParityCopyParentsDoubleStar(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("parents-dstar", map[string]string{
		"Dockerfile": `FROM {{BASE}} AS base
WORKDIR /test
RUN mkdir -p a/b/c/d/e a/b/c2/d/e2 && touch a/b/c/d/foo a/b/c/d/e/bay a/b/c2/d/e2/baz
FROM scratch
COPY --parents ./x/**/*.txt /ctx/
COPY --parents x/./b/**/*.txt /pivot/
COPY x/**/*.txt /plain/
COPY --from=base --parents /test/a/b/./c/**/e /stage/
COPY --from=base --parents /test/a/b/**/baz /stage2/
COPY --from=base --parents /test/a/b2*/c /none/
`,
		"x/a.txt":     "a",
		"x/b/c.txt":   "c",
		"x/b/d/e.txt": "e",
		"x/b/d/f.md":  "f",
		"y/g.txt":     "g",
	})
	out := filepath.Join(e.dir, "out")
	e.build("-o", "type=local,dest="+out, ctx)
	for dir, want := range map[string][]string{
		"ctx":    {"x/", "x/a.txt", "x/b/", "x/b/c.txt", "x/b/d/", "x/b/d/e.txt"},
		"pivot":  {"b/", "b/c.txt", "b/d/", "b/d/e.txt"},
		"plain":  {"c.txt"},
		"stage":  {"c/", "c/d/", "c/d/e/", "c/d/e/bay"},
		"stage2": {"test/", "test/a/", "test/a/b/", "test/a/b/c2/", "test/a/b/c2/d/", "test/a/b/c2/d/e2/", "test/a/b/c2/d/e2/baz"},
		"none":   nil,
	} {
		if got := parityTree(t, filepath.Join(out, dir)); !slices.Equal(got, want) {
			t.Errorf("/%s: %v, want %v", dir, got, want)
		}
	}
}

// The key of a --parents "**" COPY covers the matched files at every depth, and only them.
func TestParityCopyParentsDoubleStarCacheKey(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("parents-dstar-key", map[string]string{
		"Dockerfile":  "FROM {{BASE}}\nCOPY --parents x/**/*.txt /dst/\nRUN find /dst -type f | sort > /listing\n",
		"x/a.txt":     "a",
		"x/b/d/e.txt": "e",
		"x/b/d/f.md":  "f",
	})
	e.build(ctx)
	if err := os.WriteFile(filepath.Join(ctx, "x/b/d/f.md"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.build(ctx); len(missed(r.out)) != 0 {
		t.Errorf("an unmatched file made %v miss:\n%s", missed(r.out), r.out)
	}
	if err := os.WriteFile(filepath.Join(ctx, "x/b/d/e.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.build(ctx)
	if reason := missReason(r.out, "COPY --parents"); reason != "x/b/d/e.txt changed" {
		t.Errorf("COPY miss reason %q, want \"x/b/d/e.txt changed\":\n%s", reason, r.out)
	}
	if err := os.MkdirAll(filepath.Join(ctx, "x/b/d/z"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "x/b/d/z/new.txt"), []byte("n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(e.dir, "out")
	r = e.build("-o", "type=local,dest="+out, ctx)
	if len(missed(r.out)) == 0 {
		t.Errorf("a new deep match did not miss:\n%s", r.out)
	}
	if got := readFile(t, filepath.Join(out, "listing")); got != "/dst/x/a.txt\n/dst/x/b/d/e.txt\n/dst/x/b/d/z/new.txt\n" {
		t.Errorf("listing %q", got)
	}
}
