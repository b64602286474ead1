package check

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// workspace describes how one ecosystem declares its modules: the root file that lists them,
// how to read the list, and each module's own manifest.
type workspace struct {
	root    string
	members func(c *buildContext, dir string) []string // module dirs, context-relative
	member  []string                                   // manifest names inside a module
}

var workspaces = map[string][]workspace{
	"maven":  {{root: "pom.xml", members: mavenModules, member: []string{"pom.xml"}}},
	"gradle": {{root: "settings.gradle", members: gradleIncludes, member: []string{"build.gradle", "build.gradle.kts"}}, {root: "settings.gradle.kts", members: gradleIncludes, member: []string{"build.gradle", "build.gradle.kts"}}},
	"cargo":  {{root: "Cargo.toml", members: cargoMembers, member: []string{"Cargo.toml"}}},
	"npm":    {{root: "package.json", members: jsWorkspaces, member: []string{"package.json"}}},
	"yarn":   {{root: "package.json", members: jsWorkspaces, member: []string{"package.json"}}},
	"pnpm":   {{root: "pnpm-workspace.yaml", members: pnpmPackages, member: []string{"package.json"}}},
	"go":     {{root: "go.work", members: goWorkUses, member: []string{"go.mod"}}},
}

var (
	mavenModuleRe = regexp.MustCompile(`<module>\s*([^<\s]+)\s*</module>`)
	gradleIncRe   = regexp.MustCompile(`(?m)^\s*include\s*\(?([^)\n]*)\)?`)
	quotedRe      = regexp.MustCompile(`["']([^"']+)["']`)
	cargoMembRe   = regexp.MustCompile(`(?s)\[workspace\].*?members\s*=\s*\[([^\]]*)\]`)
	pnpmPkgRe     = regexp.MustCompile(`(?m)^\s*-\s*["']?([^"'\n#]+?)["']?\s*$`)
	goUseRe       = regexp.MustCompile(`(?m)^\s*use\s+(?:\(([^)]*)\)|(\S+))`)
)

func mavenModules(c *buildContext, dir string) []string {
	var out []string
	for _, m := range mavenModuleRe.FindAllStringSubmatch(c.read(path.Join(dir, "pom.xml")), -1) {
		d := path.Join(dir, m[1])
		if strings.HasSuffix(m[1], ".xml") {
			d = path.Dir(d)
		}
		out = append(out, d)
		out = append(out, mavenModules(c, d)...)
	}
	return out
}

func gradleIncludes(c *buildContext, dir string) []string {
	var out []string
	for _, name := range []string{"settings.gradle", "settings.gradle.kts"} {
		for _, m := range gradleIncRe.FindAllStringSubmatch(c.read(path.Join(dir, name)), -1) {
			for _, q := range quotedRe.FindAllStringSubmatch(m[1], -1) {
				out = append(out, path.Join(dir, strings.ReplaceAll(strings.TrimPrefix(q[1], ":"), ":", "/")))
			}
		}
	}
	return out
}

func globDirs(c *buildContext, dir string, pats []string) []string {
	var out []string
	for _, p := range pats {
		p = strings.TrimSpace(strings.TrimPrefix(p, "./"))
		if p == "" || strings.HasPrefix(p, "!") {
			continue
		}
		for _, m := range c.glob(path.Join(dir, p)) {
			if c.isDir(m) {
				out = append(out, m)
			}
		}
	}
	return out
}

func cargoMembers(c *buildContext, dir string) []string {
	m := cargoMembRe.FindStringSubmatch(c.read(path.Join(dir, "Cargo.toml")))
	if m == nil {
		return nil
	}
	var pats []string
	for _, q := range quotedRe.FindAllStringSubmatch(m[1], -1) {
		pats = append(pats, q[1])
	}
	return globDirs(c, dir, pats)
}

func jsWorkspaces(c *buildContext, dir string) []string {
	var pj struct {
		Workspaces json.RawMessage `json:"workspaces"`
	}
	if json.Unmarshal([]byte(c.read(path.Join(dir, "package.json"))), &pj) != nil || len(pj.Workspaces) == 0 {
		return nil
	}
	var pats []string
	if json.Unmarshal(pj.Workspaces, &pats) != nil {
		var obj struct {
			Packages []string `json:"packages"`
		}
		_ = json.Unmarshal(pj.Workspaces, &obj)
		pats = obj.Packages
	}
	return globDirs(c, dir, pats)
}

func pnpmPackages(c *buildContext, dir string) []string {
	var pats []string
	for _, m := range pnpmPkgRe.FindAllStringSubmatch(c.read(path.Join(dir, "pnpm-workspace.yaml")), -1) {
		pats = append(pats, m[1])
	}
	return globDirs(c, dir, pats)
}

func goWorkUses(c *buildContext, dir string) []string {
	var out []string
	for _, m := range goUseRe.FindAllStringSubmatch(c.read(path.Join(dir, "go.work")), -1) {
		for _, u := range strings.Fields(m[1] + " " + m[2]) {
			if d := path.Join(dir, u); d != dir {
				out = append(out, d)
			}
		}
	}
	return out
}

// copied reports whether a context path is brought in by one of the sources.
func copied(p string, srcs []string) bool {
	for _, s := range srcs {
		s = path.Clean(strings.TrimPrefix(s, "/"))
		if s == "." || s == p || strings.HasPrefix(p, s+"/") {
			return true
		}
		if ok, _ := path.Match(s, p); ok {
			return true
		}
		if strings.Contains(s, "**") {
			if ok, _ := path.Match(path.Base(s), path.Base(p)); ok {
				return true
			}
		}
	}
	return false
}

// STR002: a multi-module project whose resolve step sees only the root manifest.
func (c *checker) multiModule() {
	if c.ctx == nil {
		return
	}
	for _, s := range c.df.stages {
		done := map[*instr]bool{}
		for j, R := range s.instrs {
			if R.kind != "run" {
				continue
			}
			for _, u := range uses(R.run) {
				for _, ws := range workspaces[u.eco.name] {
					var srcs []string
					var rootCopy *instr
					rootDir := ""
					for _, in := range s.instrs[:j] {
						ss, _, ok := copySources(in)
						if !ok {
							continue
						}
						srcs = append(srcs, ss...)
						for _, src := range ss {
							clean := path.Clean(strings.TrimPrefix(src, "/"))
							if path.Base(clean) == ws.root && !strings.ContainsAny(clean, "*?[") {
								rootCopy, rootDir = in, path.Dir(clean)
							}
						}
					}
					if rootCopy == nil || done[rootCopy] || wholeDir(rootDir, srcs) {
						continue
					}
					var missing []string
					for _, m := range ws.members(c.ctx, rootDir) {
						for _, name := range ws.member {
							p := path.Join(m, name)
							if c.ctx.exists(p) && !copied(p, srcs) {
								missing = append(missing, p)
							}
						}
					}
					if len(missing) == 0 {
						continue
					}
					done[rootCopy] = true
					_, dest, _ := copySources(rootCopy)
					rc, rd := rootCopy, rootDir
					list := missing
					if len(list) > 3 {
						list = append(append([]string(nil), list[:3]...), "…")
					}
					c.add("STR002", rootCopy, fmt.Sprintf("only the root %s is copied before `%s` (line %d); the modules' %s are not (%s)",
						ws.root, strings.TrimSpace(segments(R.run)[u.seg]), R.node.StartLine, strings.Join(ws.member, "/"), strings.Join(list, ", ")),
						"copy each module's manifest next to the root one before resolving", R, func(rw *rewrite) error {
							var lines []string
							for _, p := range missing {
								r := strings.TrimPrefix(path.Dir(p), rd+"/")
								if rd == "." {
									r = path.Dir(p)
								}
								lines = append(lines, "COPY "+flagText(rc, "exclude", "parents")+p+" "+joinDest(dest, r))
							}
							rw.after(rc, lines...)
							return nil
						})
				}
			}
		}
	}
}

// wholeDir reports whether a source copies dir whole (then STR001 is the finding, not this).
func wholeDir(dir string, srcs []string) bool {
	for _, s := range srcs {
		s = path.Clean(strings.TrimPrefix(s, "/"))
		if s == "." || s == "*" || s == dir || strings.HasPrefix(dir, s+"/") {
			return true
		}
	}
	return false
}
