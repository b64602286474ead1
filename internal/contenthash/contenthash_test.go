package contenthash

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		abs := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(content, "->") {
			if err := os.Symlink(strings.TrimPrefix(content, "->"), abs); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(abs, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func sel(t testing.TB, s *Source, srcs ...string) *Selection {
	t.Helper()
	out, err := s.Select(srcs, nil)
	if err != nil {
		t.Fatalf("Select(%v): %v", srcs, err)
	}
	return out
}

func paths(s *Selection) []string {
	var out []string
	for _, f := range s.Files {
		out = append(out, f.Path)
	}
	return out
}

var base = map[string]string{
	"package.json":      `{"name":"x"}`,
	"package-lock.json": `{}`,
	"app/main.js":       "console.log(1)",
	"app/lib/util.js":   "module.exports={}",
	"app/link":          "->lib/util.js",
	"README.md":         "readme",
}

func TestDigestInvariance(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	writeTree(t, d1, base)
	writeTree(t, d2, base)
	digestOf := func(root string) string {
		return string(sel(t, &Source{Root: root}, "app", "package.json").Digest)
	}
	ref := digestOf(d1)
	if got := digestOf(d2); got != ref {
		t.Fatalf("same tree in two dirs: %s != %s", got, ref)
	}

	same := func(name string, mutate func()) {
		t.Helper()
		mutate()
		if got := digestOf(d1); got != ref {
			t.Errorf("%s changed the digest", name)
		}
	}
	differ := func(name string, mutate, undo func()) {
		t.Helper()
		mutate()
		if got := digestOf(d1); got == ref {
			t.Errorf("%s did not change the digest", name)
		}
		undo()
		if got := digestOf(d1); got != ref {
			t.Errorf("undoing %s did not restore the digest", name)
		}
	}
	p := func(s string) string { return filepath.Join(d1, s) }

	same("touch", func() {
		old := time.Now().Add(-time.Hour)
		os.Chtimes(p("app/main.js"), old, old)
		os.Chtimes(p("app"), old, old)
	})
	same("new inode, same content", func() {
		os.Rename(p("app/main.js"), p("tmp"))
		os.WriteFile(p("app/main.js"), []byte("console.log(1)"), 0o644)
		os.Remove(p("tmp"))
	})
	same("unselected file edit", func() { os.WriteFile(p("README.md"), []byte("other"), 0o644) })
	same("unselected file added", func() { os.WriteFile(p("other.txt"), []byte("x"), 0o644) })

	differ("content", func() { os.WriteFile(p("app/main.js"), []byte("console.log(2)"), 0o644) },
		func() { os.WriteFile(p("app/main.js"), []byte("console.log(1)"), 0o644) })
	differ("chmod +x", func() { os.Chmod(p("app/main.js"), 0o755) }, func() { os.Chmod(p("app/main.js"), 0o644) })
	differ("dir chmod", func() { os.Chmod(p("app/lib"), 0o700) }, func() { os.Chmod(p("app/lib"), 0o755) })
	differ("symlink target", func() { os.Remove(p("app/link")); os.Symlink("main.js", p("app/link")) },
		func() { os.Remove(p("app/link")); os.Symlink("lib/util.js", p("app/link")) })
	differ("rename", func() { os.Rename(p("app/main.js"), p("app/index.js")) },
		func() { os.Rename(p("app/index.js"), p("app/main.js")) })
	differ("add file in selected dir", func() { os.WriteFile(p("app/new.js"), nil, 0o644) },
		func() { os.Remove(p("app/new.js")) })
	differ("delete file in selected dir", func() { os.Remove(p("app/lib/util.js")) },
		func() { os.WriteFile(p("app/lib/util.js"), []byte("module.exports={}"), 0o644) })
	differ("empty dir added", func() { os.Mkdir(p("app/empty"), 0o755) }, func() { os.Remove(p("app/empty")) })
}

func TestOwnersInDigest(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, base)
	withOwners := &Source{Root: d, Owners: true}
	ref := sel(t, withOwners, "app").Digest
	if err := os.Lchown(filepath.Join(d, "app/main.js"), 1000, 1000); err != nil {
		t.Skip("cannot chown:", err)
	}
	s := sel(t, withOwners, "app")
	if s.Digest == ref {
		t.Error("owner change not in a stage source's digest")
	}
	for _, f := range s.Files {
		if f.Path == "app/main.js" && (f.UID != 1000 || f.GID != 1000) {
			t.Errorf("owner not recorded: %+v", f)
		}
	}
	// A context's host uid/gid must not leak into the key.
	a := sel(t, &Source{Root: d}, "app").Digest
	os.Lchown(filepath.Join(d, "app/main.js"), 0, 0)
	if b := sel(t, &Source{Root: d}, "app").Digest; a != b {
		t.Error("host owner changed a context digest")
	}
}

type counter struct {
	mu    sync.Mutex
	paths []string
}

func (c *counter) add(p string) { c.mu.Lock(); c.paths = append(c.paths, p); c.mu.Unlock() }

func withHooks(t *testing.T) (readDir, lstat, hash *counter) {
	readDir, lstat, hash = &counter{}, &counter{}, &counter{}
	hookReadDir, hookLstat, hookHash = readDir.add, lstat.add, hash.add
	t.Cleanup(func() { hookReadDir, hookLstat, hookHash = nil, nil, nil })
	return
}

func TestWildcardReadsOnlyWhatItNeeds(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, base)
	for i := range 5000 {
		writeTree(t, d, map[string]string{fmt.Sprintf("src/m%d/f%d.js", i%50, i): "x"})
	}
	readDir, lstat, hash := withHooks(t)
	s := sel(t, &Source{Root: d}, "package*.json")
	if got := strings.Join(paths(s), ","); got != "package-lock.json,package.json" {
		t.Fatalf("files = %s", got)
	}
	if len(s.Matches) != 2 {
		t.Fatalf("matches = %+v", s.Matches)
	}
	for _, c := range []*counter{readDir, lstat, hash} {
		for _, p := range c.paths {
			if strings.HasPrefix(p, "src") || p == "README.md" || strings.HasPrefix(p, "app") {
				t.Errorf("touched unselected path %q", p)
			}
		}
	}
	if len(readDir.paths) != 1 || readDir.paths[0] != "." {
		t.Errorf("read dirs %v, want only the root listing", readDir.paths)
	}
	if len(hash.paths) != 2 {
		t.Errorf("hashed %v", hash.paths)
	}
}

func TestDockerignore(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{
		"main.go":                  "x",
		"debug.log":                "x",
		"sub/deep/trace.log":       "x",
		"node_modules/a/index.js":  "x",
		"node_modules/keep.txt":    "x",
		"docs/guide.md":            "x",
		"build/out.bin":            "x",
		"build/important/keep.bin": "x",
	})
	ignore := []string{"**/*.log", "node_modules", "!node_modules/keep.txt", "docs/", "build", "!build/important"}
	s := sel(t, &Source{Root: d, Ignore: ignore}, ".")
	got := strings.Join(paths(s), ",")
	want := "build,build/important,build/important/keep.bin,main.go,node_modules,node_modules/keep.txt,sub,sub/deep"
	if got != want {
		t.Fatalf("files\n got %s\nwant %s", got, want)
	}
	if _, err := (&Source{Root: d, Ignore: ignore}).Select([]string{"debug.log"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("ignored file selected: %v", err)
	}
	if _, err := (&Source{Root: d, Ignore: ignore}).Select([]string{"*.log"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("ignored wildcard match selected: %v", err)
	}
	// An ignored file changing must not change the key.
	ref := s.Digest
	os.WriteFile(filepath.Join(d, "debug.log"), []byte("more"), 0o644)
	os.WriteFile(filepath.Join(d, "node_modules/a/index.js"), []byte("more"), 0o644)
	if sel(t, &Source{Root: d, Ignore: ignore}, ".").Digest != ref {
		t.Error("ignored file changed the digest")
	}
}

func TestReadDockerignore(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{
		".dockerignore":                 "# comment\n*.log\n!keep.log\n",
		"build/Dockerfile":              "FROM x",
		"build/Dockerfile.dockerignore": "only-this\n",
	})
	got, err := ReadDockerignore(d, filepath.Join(d, "Dockerfile"))
	if err != nil || strings.Join(got, ",") != "*.log,!keep.log" {
		t.Fatalf("context .dockerignore: %v %v", got, err)
	}
	got, err = ReadDockerignore(d, filepath.Join(d, "build/Dockerfile"))
	if err != nil || strings.Join(got, ",") != "only-this" {
		t.Fatalf("Dockerfile-specific ignore should win: %v %v", got, err)
	}
	got, err = ReadDockerignore(t.TempDir(), "Dockerfile")
	if err != nil || got != nil {
		t.Fatalf("no ignore file: %v %v", got, err)
	}
}

func TestExclude(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{
		"homework.txt": "x", "home.go": "x",
		"src/a.go": "x", "src/a_test.go": "x", "src/gen/b.go": "x", "src/gen/keep.go": "x",
	})
	s, err := (&Source{Root: d}).Select([]string{"hom*"}, []string{"*.txt"})
	if err != nil {
		t.Fatal(err)
	}
	// The excludes apply below each match, never to the match itself: BuildKit v0.33.1 copies
	// homework.txt here (conformance case exclude-wildcard-source).
	if got := strings.Join(paths(s), ","); got != "home.go,homework.txt" {
		t.Errorf("hom* minus *.txt = %s", got)
	}
	s, err = (&Source{Root: d}).Select([]string{"src"}, []string{"**/*_test.go", "gen", "!gen/keep.go"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(paths(s), ","); got != "src,src/a.go,src/gen,src/gen/keep.go" {
		t.Errorf("src minus excludes = %s", got)
	}
	ref := s.Digest
	os.WriteFile(filepath.Join(d, "src/a_test.go"), []byte("changed"), 0o644)
	s, _ = (&Source{Root: d}).Select([]string{"src"}, []string{"**/*_test.go", "gen", "!gen/keep.go"})
	if s.Digest != ref {
		t.Error("excluded file changed the digest")
	}
}

func TestNormalizePerms(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeTree(t, a, base)
	writeTree(t, b, base)
	os.Chmod(filepath.Join(a, "app/main.js"), 0o664)
	os.Chmod(filepath.Join(a, "app/lib"), 0o775)
	os.Chmod(filepath.Join(a, "package.json"), 0o775)
	os.Chmod(filepath.Join(b, "package.json"), 0o755)
	norm := func(root string) string {
		return string(sel(t, &Source{Root: root, NormalizePerms: true}, "app", "package.json").Digest)
	}
	if norm(a) != norm(b) {
		t.Error("umask differences changed a normalized digest")
	}
	raw := func(root string) string { return string(sel(t, &Source{Root: root}, "app", "package.json").Digest) }
	if raw(a) == raw(b) {
		t.Error("without NormalizePerms, modes must count")
	}
	os.Chmod(filepath.Join(b, "package.json"), 0o644)
	if norm(a) == norm(b) {
		t.Error("losing the x bit must change a normalized digest")
	}
}

func TestSourceErrors(t *testing.T) {
	d := t.TempDir()
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"secret": "x"})
	writeTree(t, d, map[string]string{
		"a.txt":    "x",
		"up":       "->../" + filepath.Base(outside) + "/secret",
		"abs":      "->/a.txt",
		"dirlink":  "->sub",
		"sub/b.go": "x",
		"sub/rel":  "->../a.txt",
	})
	s := &Source{Root: d}
	_, err := s.Select([]string{"app.js"}, nil)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"app.js": not found in build context`) {
		t.Errorf("missing: %v", err)
	}
	if _, err := s.Select([]string{"*.nothing"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("empty wildcard: %v", err)
	}
	// ".." stops at the root as in BuildKit: "../x" is the context's x, "../sub/b.go" its sub/b.go.
	if _, err := s.Select([]string{"../x"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("../x: %v", err)
	}
	if got := sel(t, s, "../../sub/b.go"); got.Matches[0].Target != "sub/b.go" {
		t.Errorf("../../sub/b.go: %+v", got.Files)
	}
	if _, err := s.Select([]string{"up"}, nil); !errors.Is(err, ErrEscapesRoot) {
		t.Errorf("link out of root: %v", err)
	}
	// Absolute link targets resolve against the root, as inside the container.
	got := sel(t, s, "abs")
	if got.Matches[0].Target != "a.txt" || got.Files[0].Path != "a.txt" {
		t.Errorf("abs link: %+v", got)
	}
	got = sel(t, s, "dirlink")
	if !got.Matches[0].IsDir || got.Matches[0].Path != "dirlink" || got.Matches[0].Target != "sub" {
		t.Errorf("dir link match: %+v", got.Matches)
	}
	// Symlinks inside a copied dir are kept, not followed.
	for _, f := range got.Files {
		if f.Path == "sub/rel" && f.Link != "../a.txt" {
			t.Errorf("inner link: %+v", f)
		}
	}
}

func TestStatCache(t *testing.T) {
	d := t.TempDir()
	cacheFile := filepath.Join(t.TempDir(), "stat.cache")
	writeTree(t, d, base)
	old := time.Now().Add(-time.Hour)
	for p := range base {
		os.Chtimes(filepath.Join(d, p), old, old)
	}
	_, _, hash := withHooks(t)

	c, err := LoadStatCache(cacheFile)
	if err != nil || c.Len() != 0 {
		t.Fatalf("missing cache file: %v %d", err, c.Len())
	}
	ref := sel(t, &Source{Root: d, StatCache: c}, "app", "package.json")
	if n := len(hash.paths); n != 3 {
		t.Fatalf("cold select hashed %d files, want 3", n)
	}
	if err := c.Save(cacheFile, ""); err != nil {
		t.Fatal(err)
	}
	c, _ = LoadStatCache(cacheFile)
	hash.paths = nil
	warm := sel(t, &Source{Root: d, StatCache: c}, "app", "package.json")
	if len(hash.paths) != 0 {
		t.Errorf("warm select hashed %v", hash.paths)
	}
	if warm.Digest != ref.Digest {
		t.Error("warm digest differs")
	}

	// Same size, mtime put back: only ctime tells, and it must be enough.
	p := filepath.Join(d, "app/main.js")
	os.WriteFile(p, []byte("console.log(9)"), 0o644)
	os.Chtimes(p, old, old)
	hash.paths = nil
	edited := sel(t, &Source{Root: d, StatCache: c}, "app", "package.json")
	if edited.Digest == ref.Digest || strings.Join(hash.paths, ",") != "app/main.js" {
		t.Errorf("same-size edit: hashed %v, digest changed=%v", hash.paths, edited.Digest != ref.Digest)
	}

	// A file modified just now is racy: its entry must not be trusted on the next run.
	os.WriteFile(filepath.Join(d, "package.json"), []byte(`{"name":"y"}`), 0o644)
	sel(t, &Source{Root: d, StatCache: c}, "package.json")
	c.Save(cacheFile, "")
	c, _ = LoadStatCache(cacheFile)
	hash.paths = nil
	sel(t, &Source{Root: d, StatCache: c}, "package.json")
	if strings.Join(hash.paths, ",") != "package.json" {
		t.Errorf("racy entry not re-hashed: %v", hash.paths)
	}

	// Corrupt cache: empty, no error.
	os.WriteFile(cacheFile, []byte("garbage"), 0o644)
	if c, err := LoadStatCache(cacheFile); err != nil || c.Len() != 0 {
		t.Errorf("corrupt cache: %v %d", err, c.Len())
	}
}

func TestUnder(t *testing.T) {
	s := &Selection{Files: []File{{Path: "a"}, {Path: "a/x"}, {Path: "a/y/z"}, {Path: "a.txt"}, {Path: "b"}}}
	var got []string
	for _, f := range s.Under("a") {
		got = append(got, f.Path)
	}
	if strings.Join(got, ",") != "a,a/x,a/y/z" {
		t.Errorf("Under(a) = %v", got)
	}
}

// benchTree writes n files of 1 KiB, 100 to a directory, an hour old (so the stat cache
// trusts them).
func benchTree(b *testing.B, n int) string {
	d := b.TempDir()
	old := time.Now().Add(-time.Hour)
	content := []byte(strings.Repeat("x", 1024))
	for i := range n {
		p := filepath.Join(d, fmt.Sprintf("src/d%d/f%d.txt", i%(n/100), i))
		if i < n/100 {
			os.MkdirAll(filepath.Dir(p), 0o755)
		}
		os.WriteFile(p, content, 0o644)
		os.Chtimes(p, old, old)
	}
	return d
}

var benchSizes = []int{20_000, 200_000}

// BenchmarkSelectStatCache is a no-change rebuild's context work: the walk (getdents + fstatat),
// every digest from the stat cache, and the selection digest.
func BenchmarkSelectStatCache(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			d := benchTree(b, n)
			file := filepath.Join(b.TempDir(), "sc")
			c, _ := LoadStatCache(file)
			if _, err := (&Source{Root: d, StatCache: c}).Select([]string{"."}, nil); err != nil {
				b.Fatal(err)
			}
			if err := c.Save(file, ""); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c, _ := LoadStatCache(file)
				if _, err := (&Source{Root: d, StatCache: c}).Select([]string{"."}, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSelectCold(b *testing.B) {
	d := benchTree(b, 20_000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := (&Source{Root: d}).Select([]string{"."}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// Hard links among the selected files are part of the digest (the copy recreates them), and
// only when present, so selections without any keep their digest.
func TestHardLinkDigest(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeTree(t, a, map[string]string{"x": "same", "y": "same"})
	writeTree(t, b, map[string]string{"x": "same"})
	if err := os.Link(filepath.Join(b, "x"), filepath.Join(b, "y")); err != nil {
		t.Fatal(err)
	}
	sa, sb := sel(t, &Source{Root: a}, "."), sel(t, &Source{Root: b}, ".")
	if sa.Digest == sb.Digest {
		t.Error("a hard link does not change the digest")
	}
	var linked []string
	for _, f := range sb.Files {
		if f.HardLink != "" {
			linked = append(linked, f.Path+"->"+f.HardLink)
		}
	}
	if strings.Join(linked, ",") != "y->x" {
		t.Errorf("hard links = %v", linked)
	}
	for _, f := range sa.Files {
		if f.HardLink != "" {
			t.Errorf("%s marked as a hard link", f.Path)
		}
	}
}

// --parents does not go through symlinked directories (BuildKit's include-pattern walk does
// not enter them): case parents-symlink.
func TestParentsThroughSymlink(t *testing.T) {
	d := t.TempDir()
	writeTree(t, d, map[string]string{"a/real/f": "f"})
	if err := os.Symlink("real", filepath.Join(d, "a/l")); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Source{Root: d, Parents: true}).Select([]string{"a/l/f"}, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("--parents through a symlink: %v", err)
	}
	if _, err := (&Source{Root: d, Parents: true}).Select([]string{"a/real/f"}, nil); err != nil {
		t.Errorf("--parents a/real/f: %v", err)
	}
	if _, err := (&Source{Root: d}).Select([]string{"a/l/f"}, nil); err != nil {
		t.Errorf("plain COPY through a symlink: %v", err)
	}
}
