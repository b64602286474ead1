package check

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

var errNoFix = errors.New("no safe rewrite for this layout")

// broadSource returns the context directory a COPY brings in whole, when that directory holds
// the project the install at R works on: "." for COPY . ., or a directory holding its manifests.
func (c *checker) broadSource(C, R *instr, u use) (string, bool) {
	srcs, dest, ctxCopy := copySources(C)
	if !ctxCopy {
		return "", false
	}
	for _, s := range srcs {
		if isURL(s) {
			continue
		}
		clean := path.Clean(strings.TrimPrefix(s, "/"))
		if clean == "." || clean == "*" || s == "./*" {
			return ".", true
		}
		if strings.ContainsAny(clean, "*?[") {
			continue
		}
		if c.ctx != nil {
			if !c.ctx.isDir(clean) {
				continue
			}
			if len(u.manifests) > 0 || len(u.eco.manifests) == 0 {
				if covers(C.abs(dest), manifestPaths(R, u)) {
					return clean, true
				}
				continue
			}
			sub := rel(C.abs(dest), u.wd(R))
			if sub != "" && len(c.ctx.matching(path.Join(clean, sub), u.eco.manifests[0])) > 0 {
				return clean, true
			}
			continue
		}
		base := path.Base(clean)
		if strings.HasSuffix(s, "/") || !strings.Contains(base, ".") {
			if known := isManifestName(base); !known && covers(C.abs(dest), append(manifestPaths(R, u), u.wd(R))) {
				return clean, true
			}
		}
	}
	return "", false
}

func isManifestName(b string) bool {
	for _, e := range ecosystems {
		for _, m := range e.manifests {
			if ok, _ := path.Match(m, b); ok {
				return true
			}
		}
	}
	switch b {
	case "Gemfile", "Pipfile", "Makefile", "mvnw", "gradlew", "Procfile", "Rakefile", "Dockerfile", "LICENSE", "VERSION", "Justfile", "Caddyfile", "entrypoint":
		return true
	}
	return false
}

// manifestPaths are the absolute paths of the manifests the install names (pip -r), else the
// directory it runs in.
func manifestPaths(R *instr, u use) []string {
	var out []string
	wd := u.wd(R)
	for _, m := range u.manifests {
		a := path.Clean(m)
		if !strings.HasPrefix(m, "/") {
			if wd == "" {
				continue
			}
			a = path.Join(wd, m)
		}
		out = append(out, a)
	}
	if len(out) == 0 && wd != "" {
		out = append(out, wd)
	}
	return out
}

// covers reports whether dir is, or is an ancestor of, any of the paths.
func covers(dir string, paths []string) bool {
	if dir == "" {
		return false
	}
	for _, p := range paths {
		if p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/") {
			return true
		}
	}
	return false
}

// rel returns p relative to dir ("." when equal), or "" when p is not inside dir.
func rel(dir, p string) string {
	if dir == "" || p == "" {
		return ""
	}
	if p == dir {
		return "."
	}
	d := strings.TrimSuffix(dir, "/") + "/"
	if dir == "/" {
		d = "/"
	}
	if strings.HasPrefix(p, d) {
		return strings.TrimPrefix(p, d)
	}
	return ""
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "git@")
}

// STR001: a broad copy before a dependency install.
func (c *checker) broadCopy() {
	for _, s := range c.df.stages {
		done := map[*instr]bool{}
		for j, R := range s.instrs {
			if R.kind != "run" {
				continue
			}
			for _, u := range uses(R.run) {
				if u.project && u.projectOff == "" {
					continue
				}
				if !u.install && c.resolvedBefore(s, j, u, R) {
					continue
				}
				for i := 0; i < j; i++ {
					C := s.instrs[i]
					if C.kind != "copy" && C.kind != "add" {
						continue
					}
					src, ok := c.broadSource(C, R, u)
					if !ok || done[C] || installedBefore(s, i, u) {
						continue
					}
					if !u.install && u.eco.name == "go" && c.ctx != nil && c.ctx.isDir(path.Join(src, "vendor")) {
						continue
					}
					done[C] = true
					cmd := strings.TrimSpace(segments(R.run)[u.seg])
					var msg, fix string
					if u.install {
						msg = fmt.Sprintf("%s copies the sources before `%s` (line %d): every source edit re-runs the install", short(C), cmd, R.node.StartLine)
						fix = fmt.Sprintf("copy only the %s manifests, run the install, then copy the rest", u.eco.name)
					} else {
						msg = fmt.Sprintf("%s copies the sources before `%s` (line %d), which downloads the %s dependencies: every source edit downloads them again", short(C), cmd, R.node.StartLine, u.eco.name)
						fix = fmt.Sprintf("copy the %s manifests and run `%s` before copying the sources", u.eco.name, resolveCmd(u))
					}
					C, R, u, src := C, R, u, src
					f := c.add("STR001", C, msg, fix, R, func(rw *rewrite) error { return c.fixOrder(rw, s, C, R, u, src) })
					if u.install {
						// A build step that only resolves on the side re-runs on a source edit
						// after the fix too: only an install's re-runs are what the copy cost.
						f.price = pricing{kind: priceBroadCopy, lead: fmt.Sprintf("%s at line %d re-ran `%s`", shortText(C), C.node.StartLine, cmd),
							manifests: installManifests(u)}
					}
					break
				}
			}
		}
	}
}

// installedBefore reports whether the stage already ran an install of the same ecosystem
// before instruction i (pnpm fetch, uv sync --no-install-project): the one after the sources
// then only links what is there.
func installedBefore(s *stage, i int, u use) bool {
	for _, in := range s.instrs[:i] {
		if in.kind != "run" {
			continue
		}
		for _, v := range uses(in.run) {
			if v.eco == u.eco && v.install {
				return true
			}
		}
	}
	return false
}

// resolvedBefore reports whether a build step's dependencies are already resolved: an earlier
// dependency-only step for the same ecosystem, or a cache mount that keeps the downloads.
func (c *checker) resolvedBefore(s *stage, j int, u use, R *instr) bool {
	if cacheMounted(R) {
		return true
	}
	for _, in := range s.instrs[:j] {
		if in.kind != "run" {
			continue
		}
		for _, v := range uses(in.run) {
			if v.eco == u.eco {
				return true
			}
		}
	}
	return false
}

func resolveCmd(u use) string {
	r := u.eco.resolve
	if u.wrapper != "" {
		r = strings.Replace(r, strings.Fields(r)[0], u.wrapper, 1)
	}
	return r
}

func short(in *instr) string {
	t := strings.Join(strings.Fields(in.node.Original), " ")
	if len(t) > 40 {
		t = t[:37] + "..."
	}
	return fmt.Sprintf("`%s` (line %d)", t, in.node.StartLine)
}

// setupOnly reports whether a RUN between the broad copy and the install cannot read the copied
// sources (system packages, tools, users), so the copy may move past it.
func setupOnly(in *instr) bool {
	switch in.kind {
	case "env", "arg", "label", "expose", "user", "workdir", "shell", "healthcheck", "cmd", "entrypoint", "stopsignal", "maintainer":
		return true
	case "run":
		for _, seg := range segments(in.run) {
			if !setupSeg(seg) {
				return false
			}
		}
		return true
	}
	return false
}

func setupSeg(seg string) bool {
	f := words(seg)
	if len(f) == 0 {
		return true
	}
	switch path.Base(f[0]) {
	case "apt-get", "apt", "apk", "yum", "dnf", "microdnf", "corepack", "mkdir", "echo", "adduser", "useradd", "groupadd", "addgroup", "true", "gem", "update-ca-certificates", "locale-gen", "ln", "curl", "wget":
		return true
	case "rm":
		return strings.Contains(seg, "/var/lib/apt/lists") || strings.Contains(seg, "/var/cache") || strings.Contains(seg, "/tmp")
	case "npm", "yarn", "pnpm":
		return has(f, "-g", "--global", "global")
	case "pip", "pip3":
		return len(f) > 1 && f[1] == "install" && !has(f, "-r", "--requirement", ".", "-e")
	}
	return false
}

// fixOrder rewrites "broad copy … install" as "manifests, install, broad copy": the broad copy's
// line becomes the manifest COPY, the install stays where it is (so its WORKDIR, ENV and USER
// are unchanged) and the broad copy moves after it. A build step that resolves as a side effect
// gets a dependency-only step inserted before the broad copy instead.
func (c *checker) fixOrder(rw *rewrite, s *stage, C, R *instr, u use, src string) error {
	if u.dir != "" {
		// The install runs elsewhere than its RUN's working directory (cd, --prefix): the
		// manifest copies below are computed from that directory, so no rewrite is offered.
		return errNoFix
	}
	_, dest, _ := copySources(C)
	destAbs := C.abs(dest)
	var sub string
	switch {
	case destAbs != "" && R.wd != "":
		sub = rel(destAbs, R.wd)
	case C.wd == R.wd && (dest == "." || dest == "./"):
		sub = "."
	}
	if sub == "" {
		return errNoFix
	}
	if len(C.node.Heredocs) > 0 || strings.Contains(flagText(C), "--exclude") || strings.Contains(flagText(C), "--parents") {
		return errNoFix
	}
	copies, err := c.manifestCopies(C, R, u, src, dest, sub)
	if err != nil {
		return err
	}
	if u.project {
		// poetry install / uv sync also install the project: run them once without it before
		// the sources (the tool's own flag), and leave the original after them.
		if R.wd != C.wd {
			return errNoFix
		}
		for _, in := range s.instrs {
			if in.node.StartLine > C.node.EndLine && in.node.StartLine < R.node.StartLine && in.kind != "label" && in.kind != "expose" {
				return errNoFix
			}
		}
		lines := rw.source(R)
		re := regexp.MustCompile(`\b(poetry\s+(install|sync)|uv\s+sync)\b`)
		for k, l := range lines {
			if loc := re.FindStringIndex(l); loc != nil {
				lines[k] = l[:loc[1]] + " " + u.projectOff + l[loc[1]:]
				rw.before(C, append(copies, lines...)...)
				return nil
			}
		}
		return errNoFix
	}
	if !u.install {
		run := "RUN " + cacheFlags(R)
		if sub != "." || R.wd != C.wd {
			if R.wd == "" {
				return errNoFix
			}
			run += "cd " + R.wd + " && "
		}
		rw.before(C, append(copies, run+resolveCmd(u))...)
		return nil
	}
	var between []*instr
	for _, in := range s.instrs {
		if in.node.StartLine > C.node.EndLine && in.node.StartLine < R.node.StartLine {
			between = append(between, in)
		}
	}
	for _, in := range between {
		if !setupOnly(in) {
			return errNoFix
		}
	}
	moved := rw.source(C)
	if R.wd != C.wd && !strings.HasPrefix(dest, "/") {
		if destAbs == "" {
			return errNoFix
		}
		moved = []string{"COPY " + flagText(C) + strings.Join(quoteAll(mustSources(C)), " ") + " " + destAbs + "/"}
		if C.kind == "add" {
			moved[0] = "ADD" + strings.TrimPrefix(moved[0], "COPY")
		}
	}
	rw.replace(C, copies...)
	segs := segments(R.run)
	last := u.seg
	rest := nonEmpty(segs[last+1:])
	if len(rest) == 0 {
		rw.after(R, moved...)
		return nil
	}
	// The RUN goes on after the install (npm ci && npm run build): split it, keeping the install
	// before the sources and the rest after them.
	x, ok := R.cmd.(*instructions.RunCommand)
	if !ok || !x.PrependShell || len(x.Files) > 0 || strings.Count(R.run, "&&") != len(segs)-1 {
		return errNoFix
	}
	for _, seg := range segs[:last] {
		if f := words(seg); len(f) > 0 && (f[0] == "cd" || !setupSeg(seg) && classify(f).eco == nil) {
			return errNoFix
		}
	}
	head := "RUN " + flagText(R) + strings.Join(trimAll(segs[:last+1]), " && ")
	tail := "RUN " + flagText(R) + strings.Join(trimAll(rest), " && ")
	rw.replace(R, append(append([]string{head}, moved...), tail)...)
	return nil
}

func mustSources(in *instr) []string {
	s, _, _ := copySources(in)
	return s
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if strings.ContainsAny(s, " \t") {
			s = `"` + s + `"`
		}
		out[i] = s
	}
	return out
}

func trimAll(ss []string) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

func cacheFlags(R *instr) string {
	var out []string
	for _, f := range R.node.Flags {
		if strings.HasPrefix(f, "--mount=") && strings.Contains(f, "type=cache") {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return strings.Join(out, " ") + " "
}

// manifestCopies builds the COPY lines that bring only the install's manifests, to the place
// the broad copy would have put them.
func (c *checker) manifestCopies(C, R *instr, u use, src, dest, sub string) ([]string, error) {
	type group struct{ srcs []string }
	groups := map[string]*group{}
	var order []string
	addSrc := func(dir, s string) {
		if groups[dir] == nil {
			groups[dir] = &group{}
			order = append(order, dir)
		}
		groups[dir].srcs = append(groups[dir].srcs, s)
	}
	var pats []string
	if len(u.manifests) > 0 {
		for _, m := range u.manifests {
			a := R.abs(m)
			r := rel(C.abs(dest), a)
			p := rel(R.wd, a)
			if a == "" || r == "" || r == "." || p == "" {
				return nil, errNoFix
			}
			pats = append(pats, p)
		}
		pats = append(pats, c.includedRequirements(src, sub, pats)...)
	} else {
		pats = append(pats, u.eco.manifests...)
	}
	if u.wrapper != "" {
		pats = append(pats, strings.TrimPrefix(u.wrapper, "./"))
	}
	if c.ctx == nil && u.eco.name == "dotnet" && len(u.manifests) == 0 {
		return nil, errNoFix // project files are usually in subdirectories: guessing breaks the restore
	}
	found := 0
	for i, p := range pats {
		dir := path.Join(sub, path.Dir(p))
		ctxDir := path.Join(src, dir)
		if c.ctx != nil {
			for _, m := range c.ctx.matching(ctxDir, path.Base(p)) {
				addSrc(dir, m)
				found++
			}
			continue
		}
		s := path.Join(ctxDir, path.Base(p))
		if i > 0 && len(u.manifests) == 0 && !strings.Contains(p, "*") {
			s += "*"
		}
		addSrc(dir, s)
		found++
	}
	if found == 0 {
		return nil, errNoFix
	}
	if u.wrapper != "" {
		// the wrapper script needs its directory (.mvn/wrapper, gradle/wrapper) too
		wdir := map[string]string{"maven": ".mvn", "gradle": "gradle"}[u.eco.name]
		if c.ctx == nil || c.ctx.isDir(path.Join(src, sub, wdir)) {
			order = append(order, "\x00"+wdir)
		}
	}
	var lines []string
	for _, d := range order {
		if strings.HasPrefix(d, "\x00") {
			w := d[1:]
			lines = append(lines, "COPY "+flagText(C, "exclude", "parents")+path.Join(src, sub, w)+" "+joinDest(dest, path.Join(sub, w)))
			continue
		}
		lines = append(lines, "COPY "+flagText(C, "exclude", "parents")+strings.Join(quoteAll(groups[d].srcs), " ")+" "+joinDest(dest, d))
	}
	return lines, nil
}

func joinDest(dest, d string) string {
	if d == "." || d == "" {
		if strings.HasSuffix(dest, "/") {
			return dest
		}
		return dest + "/"
	}
	return path.Join(dest, d) + "/"
}

var includeRe = regexp.MustCompile(`(?m)^\s*-(?:r|c|-requirement|-constraint)\s*=?\s*(\S+)`)

// includedRequirements follows "-r other.txt" lines, which pip reads relative to the file.
func (c *checker) includedRequirements(src, sub string, pats []string) []string {
	if c.ctx == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, p := range pats {
		seen[p] = true
	}
	var out []string
	queue := append([]string(nil), pats...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, m := range includeRe.FindAllStringSubmatch(c.ctx.read(path.Join(src, sub, p)), -1) {
			q := path.Join(path.Dir(p), m[1])
			if !seen[q] {
				seen[q] = true
				out = append(out, q)
				queue = append(queue, q)
			}
		}
	}
	return out
}

// STR003 / STR004: package caches and cache mounts.
func (c *checker) cacheMounts() {
	for _, s := range c.df.stages {
		user := ""
		for _, R := range s.instrs {
			if u, ok := R.cmd.(*instructions.UserCommand); ok {
				user = u.User
			}
			if R.kind != "run" {
				continue
			}
			us := uses(R.run)
			if len(us) == 0 {
				continue
			}
			if cacheMounted(R) {
				c.cleanInMount(R, us)
				continue
			}
			var u *use
			for k := range us {
				if us[k].install || !c.resolvedBefore(s, indexOf(s, R), us[k], R) {
					u = &us[k]
					break
				}
			}
			if u == nil {
				continue
			}
			target := u.eco.cache[0]
			mounts := "--mount=type=cache,target=" + target
			if u.eco.name == "go" {
				mounts += " --mount=type=cache,target=/root/.cache/go-build"
			}
			msg := fmt.Sprintf("`%s` downloads %s packages with no cache mount", strings.TrimSpace(segments(R.run)[u.seg]), u.eco.name)
			var edit func(*rewrite) error
			if user == "" || user == "root" || user == "0" {
				R := R
				edit = func(rw *rewrite) error {
					l := rw.df.lines[R.node.StartLine-1]
					i := strings.Index(strings.ToUpper(l), "RUN")
					if i < 0 {
						return errNoFix
					}
					rw.add(R.node.StartLine, R.node.StartLine, []string{l[:i+3] + " " + mounts + strings.TrimRight(" "+strings.TrimLeft(l[i+3:], " \t"), " ")})
					return nil
				}
			}
			c.add("STR003", R, msg, "RUN "+mounts+" …", R, edit).price = pricing{kind: priceEveryRun,
				lead: fmt.Sprintf("`%s` (line %d) ran again", strings.TrimSpace(segments(R.run)[u.seg]), R.node.StartLine), tail: ", downloading every package each time"}
		}
	}
}

var cleanRe = regexp.MustCompile(`npm cache clean|yarn cache clean|pnpm store prune|pip3? cache (purge|remove)|--no-cache-dir|composer clear-cache|go clean -modcache|apt-get clean|bundle clean|poetry cache clear|uv cache clean|--no-cache\b`)

func (c *checker) cleanInMount(R *instr, us []use) {
	targets := cacheTargets(R)
	m := cleanRe.FindString(R.run)
	if m == "" {
		for _, t := range targets {
			if t != "" && t != "/" && regexp.MustCompile(`rm\s+-[a-zA-Z]*\s+`+regexp.QuoteMeta(t)+`(/|\s|$)`).MatchString(R.run) {
				m = "rm " + t
			}
		}
	}
	if m == "" {
		return
	}
	if m == "apt-get clean" && !covers("/var/cache/apt", targets) {
		return
	}
	c.add("STR004", R, fmt.Sprintf("`%s` in a RUN that has a cache mount: the cache is emptied or bypassed", m),
		"drop the clean: the cache mount is not part of the layer, so cleaning it only loses the downloads", R, nil).price = pricing{kind: priceEveryRun,
		lead: fmt.Sprintf("%s ran again", shortText(R)), tail: fmt.Sprintf(", each time with `%s` losing the downloads", m)}
}

var aptUpdate = regexp.MustCompile(`\bapt(-get)?\s+(-\S+\s+)*update\b`)
var aptInstall = regexp.MustCompile(`\bapt(-get)?\s+(-\S+\s+)*(install|upgrade|dist-upgrade)\b`)

// STR005: apt-get update cached apart from the install.
func (c *checker) aptUpdate() {
	for _, s := range c.df.stages {
		for i, U := range s.instrs {
			if U.kind != "run" || !aptUpdate.MatchString(U.run) || aptInstall.MatchString(U.run) {
				continue
			}
			var installs []*instr
			for _, in := range s.instrs[i+1:] {
				if in.kind == "run" && aptInstall.MatchString(in.run) && !aptUpdate.MatchString(in.run) {
					installs = append(installs, in)
				}
			}
			if len(installs) == 0 {
				continue
			}
			U := U
			c.add("STR005", U, fmt.Sprintf("`apt-get update` here, `apt-get install` at line %d: the install runs against cached, stale lists", installs[0].node.StartLine),
				"run `apt-get update && apt-get install …` in one RUN", installs[0], func(rw *rewrite) error {
					if len(segments(U.run)) != 1 || U.node.StartLine != U.node.EndLine {
						return errNoFix
					}
					upd := strings.TrimSpace(U.run)
					rw.remove(U)
					for _, in := range installs {
						if len(in.node.Heredocs) > 0 {
							return errNoFix
						}
						loc := aptInstall.FindStringIndex(rw.df.lines[in.node.StartLine-1])
						if loc == nil {
							return errNoFix
						}
						l := rw.df.lines[in.node.StartLine-1]
						rw.add(in.node.StartLine, in.node.StartLine, []string{l[:loc[0]] + upd + " && " + l[loc[0]:]})
					}
					return nil
				})
		}
	}
}

// STR006 / STR007: .dockerignore.
func (c *checker) dockerignore() {
	if c.ctx == nil {
		return
	}
	named := map[string]bool{}
	for _, s := range c.df.stages {
		for _, in := range s.instrs {
			srcs, _, ok := copySources(in)
			if !ok {
				continue
			}
			for _, src := range srcs {
				named[path.Clean(strings.TrimPrefix(src, "/"))] = true
			}
		}
	}
	for _, s := range c.df.stages {
		for _, in := range s.instrs {
			srcs, _, ok := copySources(in)
			if !ok || len(in.node.Heredocs) > 0 {
				continue
			}
			for _, src := range srcs {
				if isURL(src) {
					continue
				}
				clean := path.Clean(strings.TrimPrefix(src, "/"))
				if clean != "." && !strings.ContainsAny(clean, "*?[") && c.ctx.exists(clean) && c.ctx.excluded(clean) {
					c.add("STR007", in, fmt.Sprintf("%s is excluded by %s, so this COPY fails or copies nothing", clean, path.Base(c.ctx.ignorePath)),
						"remove the pattern from the ignore file (or add a !exception), or stop copying the path", nil, nil)
				}
			}
		}
	}
	if c.ctx.ignorePath != "" {
		return
	}
	for _, s := range c.df.stages {
		for _, in := range s.instrs {
			srcs, _, ok := copySources(in)
			if !ok {
				continue
			}
			for _, src := range srcs {
				clean := path.Clean(strings.TrimPrefix(src, "/"))
				if clean != "." && clean != "*" && !c.ctx.isDir(clean) || isURL(src) {
					continue
				}
				if clean == "*" {
					clean = "."
				}
				var js []string
				for _, j := range c.ctx.junkIn(clean) {
					if !named[j] {
						js = append(js, j)
					}
				}
				if len(js) == 0 {
					continue
				}
				var pats []string
				for _, j := range js {
					pats = append(pats, path.Join("/", j)[1:])
				}
				content := "# written by strata check --fix: kept out of the build context\n" + strings.Join(pats, "\n") + "\n"
				c.add("STR006", in, fmt.Sprintf("no .dockerignore, and %s copies %s", short(in), strings.Join(js, ", ")),
					"add a .dockerignore listing "+strings.Join(pats, ", "), nil, func(rw *rewrite) error {
						rw.files[".dockerignore"] = content
						return nil
					})
				return
			}
		}
	}
}

var volatileRe = regexp.MustCompile(`(?i)^(BUILD_?(DATE|TIME|TIMESTAMP|ID|NUMBER|NUM|REF|SHA)|BUILDTIME|BUILD_?DATE_?TIME|DATE|TIMESTAMP|CREATED|GIT_?(SHA|COMMIT|COMMIT_?SHA|HASH|REVISION|REF|DESCRIBE)|COMMIT(_?(SHA|HASH|ID|REF))?|SHA|REVISION|VCS_?REF|SOURCE_?COMMIT|CI_COMMIT_SHA|GITHUB_SHA|GITHUB_RUN_(ID|NUMBER)|CI_PIPELINE_ID|BUILD_?VERSION)$`)

// STR008: an ARG fed per build declared before RUN steps that do not use it. Every RUN after
// an ARG has it in its environment, so each one before the first RUN that really reads it (or an
// ENV made from it) re-runs needlessly.
func (c *checker) volatileArgs() {
	for _, s := range c.df.stages {
		for i, A := range s.instrs {
			a, ok := A.cmd.(*instructions.ArgCommand)
			if !ok {
				continue
			}
			for _, kv := range a.Args {
				if !volatileRe.MatchString(kv.Key) {
					continue
				}
				names := []string{kv.Key}
				refs := func(text string) bool {
					for _, n := range names {
						if regexp.MustCompile(`\$\{?` + regexp.QuoteMeta(n) + `\b`).MatchString(text) {
							return true
						}
					}
					return false
				}
				runs := 0
				var user *instr
				var carried []*instr // LABELs that read it: they move with the ARG
				movable := len(a.Args) == 1
				for _, in := range s.instrs[i+1:] {
					if in.kind == "run" {
						if refs(in.node.Original) || refs(in.run) {
							user = in
							break
						}
						runs++
						continue
					}
					if !refs(in.node.Original) {
						continue
					}
					switch x := in.cmd.(type) {
					case *instructions.EnvCommand:
						for _, e := range x.Env {
							names = append(names, e.Key)
						}
						movable = false
					case *instructions.LabelCommand:
						carried = append(carried, in)
					default:
						movable = false
					}
				}
				if runs == 0 {
					continue
				}
				A, last := A, s.instrs[len(s.instrs)-1]
				c.add("STR008", A, fmt.Sprintf("ARG %s changes every build and is in the environment of %d RUN step(s) that do not use it: they all re-run", kv.Key, runs),
					"declare the ARG just before the first RUN that uses it (with the LABELs that read it at the end of the stage)", nil, func(rw *rewrite) error {
						if !movable {
							return errNoFix
						}
						src := rw.source(A)
						rw.remove(A)
						for _, l := range carried {
							src = append(src, rw.source(l)...)
							rw.remove(l)
						}
						if user != nil {
							rw.before(user, src...)
						} else {
							rw.after(last, src...)
						}
						return nil
					})
			}
		}
	}
}

// STR009: ADD of a URL without --checksum.
func (c *checker) addURL() {
	for _, s := range c.df.stages {
		for _, in := range s.instrs {
			a, ok := in.cmd.(*instructions.AddCommand)
			if !ok || a.Checksum != "" {
				continue
			}
			for _, src := range a.SourcePaths {
				if (strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")) && !strings.HasSuffix(src, ".git") && !strings.Contains(src, ".git#") {
					c.add("STR009", in, fmt.Sprintf("ADD %s has no --checksum: it is downloaded on every build to see whether it changed", src),
						"ADD --checksum=sha256:<digest> "+src+" …", in, nil)
					break
				}
			}
		}
	}
}

// STR010: VOLUME before a RUN that writes into it.
func (c *checker) volumes() {
	for _, s := range c.df.stages {
		for i, V := range s.instrs {
			v, ok := V.cmd.(*instructions.VolumeCommand)
			if !ok {
				continue
			}
			for _, vol := range v.Volumes {
				vol = path.Clean(vol)
				if vol == "/" || strings.Contains(vol, "$") {
					continue
				}
				re := regexp.MustCompile(`(^|[\s'"=:>])` + regexp.QuoteMeta(vol) + `($|[\s/'";&|)])`)
				var last *instr
				for _, in := range s.instrs[i+1:] {
					if in.kind == "run" && re.MatchString(in.run) {
						last = in
					}
				}
				if last == nil {
					continue
				}
				V, last := V, last
				c.add("STR010", V, fmt.Sprintf("VOLUME %s is declared before the RUN at line %d that writes into it", vol, last.node.StartLine),
					"move the VOLUME after the last RUN that writes there", nil, func(rw *rewrite) error {
						if len(v.Volumes) != 1 {
							return errNoFix
						}
						src := rw.source(V)
						rw.remove(V)
						rw.after(last, src...)
						return nil
					})
				break
			}
		}
	}
}

func indexOf(s *stage, in *instr) int {
	for i, x := range s.instrs {
		if x == in {
			return i
		}
	}
	return len(s.instrs)
}
