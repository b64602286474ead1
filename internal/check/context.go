package check

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// buildContext is what the rules may know of the context: which paths exist and what
// .dockerignore excludes. It is only ever stat'ed and listed by name (manifests are read), never
// walked in full.
type buildContext struct {
	root       string
	ignorePath string // the ignore file in use, "" when there is none
	ignore     *patternmatcher.PatternMatcher
	patterns   []string
}

func loadContext(o Options) (*buildContext, error) {
	if o.Context == "" {
		return nil, nil
	}
	st, err := os.Stat(o.Context)
	if err != nil {
		return nil, fmt.Errorf("context: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("context %s is not a directory", o.Context)
	}
	c := &buildContext{root: o.Context}
	cands := []string{o.IgnoreFile}
	if o.IgnoreFile == "" {
		cands = []string{filepath.Join(o.Context, ".dockerignore")}
		if o.Path != "" {
			cands = append([]string{o.Path + ".dockerignore"}, cands...)
		}
	}
	for _, p := range cands {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		pats, err := ignorefile.ReadAll(strings.NewReader(string(data)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		pm, err := patternmatcher.New(pats)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		c.ignorePath, c.ignore, c.patterns = p, pm, pats
		break
	}
	return c, nil
}

func (c *buildContext) full(rel string) string {
	return filepath.Join(c.root, filepath.FromSlash(path.Clean("/"+rel)))
}

func (c *buildContext) exists(rel string) bool {
	_, err := os.Lstat(c.full(rel))
	return err == nil
}

func (c *buildContext) isDir(rel string) bool {
	st, err := os.Stat(c.full(rel))
	return err == nil && st.IsDir()
}

func (c *buildContext) read(rel string) string {
	data, err := os.ReadFile(c.full(rel))
	if err != nil {
		return ""
	}
	return string(data)
}

// glob matches a context-relative pattern.
func (c *buildContext) glob(pat string) []string {
	ms, _ := filepath.Glob(c.full(pat))
	var out []string
	for _, m := range ms {
		if r, err := filepath.Rel(c.root, m); err == nil {
			out = append(out, filepath.ToSlash(r))
		}
	}
	return out
}

// excluded reports whether .dockerignore keeps rel out of the context.
func (c *buildContext) excluded(rel string) bool {
	if c == nil || c.ignore == nil {
		return false
	}
	rel = path.Clean(strings.TrimPrefix(rel, "/"))
	ok, err := c.ignore.MatchesOrParentMatches(rel)
	if err != nil || !ok {
		return false
	}
	// a directory with re-included paths inside it still brings those
	for _, p := range c.patterns {
		if strings.HasPrefix(p, "!") && strings.HasPrefix(path.Clean(strings.TrimPrefix(p[1:], "/")), rel+"/") {
			return false
		}
	}
	return true
}

// junk are directories that hold VCS data, dependencies or build output: a broad COPY of a
// context holding them, without a .dockerignore, changes with every commit or local build.
var junk = []string{".git", "node_modules", "target", ".venv", "venv", "dist", "build", "__pycache__", ".tox", ".next", ".gradle", "bin/Debug", "obj", "_build", "deps", ".pytest_cache", "coverage", ".terraform"}

// junkIn lists the junk directories present under dir (context-relative).
func (c *buildContext) junkIn(dir string) []string {
	var out []string
	for _, j := range junk {
		p := path.Join(dir, j)
		if st, err := os.Stat(c.full(p)); err == nil && st.IsDir() {
			out = append(out, p)
		}
	}
	return out
}

// matching lists the files in dir (context-relative) whose names match a glob.
func (c *buildContext) matching(dir, pattern string) []string {
	ents, err := os.ReadDir(c.full(dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if ok, _ := path.Match(pattern, e.Name()); ok && !e.IsDir() {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out
}

func mustMatcher(pats []string) *patternmatcher.PatternMatcher {
	pm, err := patternmatcher.New(pats)
	if err != nil {
		pm, _ = patternmatcher.New(nil)
	}
	return pm
}
