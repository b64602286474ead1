package main

// The differential test's generator and oracle: a tiny project model (context files, .dockerignore,
// build args, a multi-stage Dockerfile), random edits applied to both the model and the disk, and
// a simulation of the build that is independent of strata's code. The simulation computes, for
// every step, an abstract cache key from exactly what the step reads (its instruction, the files
// it selects, the env it sees, its parent filesystem), and a fingerprint of the layer it writes.
// Parent identity is the chain of those fingerprints, so early cutoff is modelled: a step that
// re-runs but writes the same content leaves the chain, and the steps after it, unchanged.
//
// Soundness rule for the oracle: a fingerprint may distinguish more than strata does (that only
// makes the oracle expect a miss it then does not see, which is reported as information), but it
// must never merge two states strata legitimately distinguishes, or the test would flag a
// correct miss as needless. Every fingerprint is therefore a function of everything that can
// reach the layer; RUN fingerprints are the exact bytes the command writes.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// ---------- project model ----------

// cfile is a context file or symlink.
type cfile struct {
	mode fs.FileMode // permission bits (regular files)
	data string
	link string // symlink target when non-empty
}

// ignoreRule is one pattern of the .dockerignore menu with a hand-written predicate (checked once
// against moby/patternmatcher): match reports whether the rule matches rel or one of its parents.
type ignoreRule struct {
	pat     string
	exclude bool
	match   func(rel string) bool
}

func underOrIs(rel, dir string) bool { return rel == dir || strings.HasPrefix(rel, dir+"/") }

// ignoreMenu is rendered in this order, so "!keep.md" always follows "*.md". No rule ever ignores
// a path a COPY names directly (a.txt, b.txt, src/x.txt, lnk, src, docs), which would fail the build.
var ignoreMenu = []ignoreRule{
	{"*.md", true, func(r string) bool { return !strings.Contains(r, "/") && strings.HasSuffix(r, ".md") }},
	{"!keep.md", false, func(r string) bool { return r == "keep.md" }},
	{"readme.md", true, func(r string) bool { return r == "readme.md" }},
	{"src/sub", true, func(r string) bool { return underOrIs(r, "src/sub") }},
	{"**/*.log", true, func(r string) bool { return strings.HasSuffix(path.Base(r), ".log") }},
	{"docs/*.txt", true, func(r string) bool {
		d, b := path.Split(r)
		return d == "docs/" && strings.HasSuffix(b, ".txt")
	}},
	{"src/y*", true, func(r string) bool {
		d, b := path.Split(r)
		return d == "src/" && strings.HasPrefix(b, "y")
	}},
}

// Paths the edits never delete or rename (COPY names them directly).
var protectedFiles = map[string]bool{"a.txt": true, "b.txt": true, "src/x.txt": true, "lnk": true}

// Context directories; they always exist (deleting their last file leaves them, as git would not,
// but as a developer's checkout does).
var contextDirs = []string{"docs", "src", "src/sub"}

// Names an add or rename may use.
var extraNames = []string{"c.txt", "d.md", "keep.md", "readme.md", "notes.log", "src/w.txt", "src/y.txt",
	"src/y2.txt", "src/t.log", "src/sub/z.txt", "src/sub/q.txt", "docs/n.txt", "docs/m.txt", "docs/k.md"}

// Small pools, so edits often return to an earlier state (which may then hit an older record).
var contentPool = []string{"alpha\n", "alpha\nbeta\n", "beta\n", "gamma\n", "", "alpha\ngamma\n", "beta\nalpha\n"}
var modePool = []fs.FileMode{0o644, 0o755, 0o600}

type instr struct {
	kind string // copy, from, run, arg, env, workdir
	text string

	from  string // COPY --from stage
	srcs  []string
	dest  string
	chmod fs.FileMode

	run   string // cat, ls, sha, head, echo
	paths []string
	out   string // /o/rN

	name string  // ARG name
	def  *string // ARG default
}

type stageDef struct {
	name  string
	base  string // "" = the busybox image, else a stage name
	steps []*instr
}

type project struct {
	files  map[string]*cfile
	ignore map[string]bool // active menu patterns
	args   map[string]string
	stages []*stageDef
	nRun   int
}

func (p *project) dockerfile() string {
	var b strings.Builder
	for _, s := range p.stages {
		base := "{{BASE}}"
		if s.base != "" {
			base = s.base
		}
		fmt.Fprintf(&b, "FROM %s AS %s\n", base, s.name)
		for _, st := range s.steps {
			b.WriteString(st.text + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (p *project) dockerignore() string {
	lines := []string{"Dockerfile", ".dockerignore"}
	for _, r := range ignoreMenu {
		if p.ignore[r.pat] {
			lines = append(lines, r.pat)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func (p *project) buildArgs() []string {
	var out []string
	for k, v := range p.args {
		out = append(out, "--build-arg", k+"="+v)
	}
	// map order is random; keep argv stable for reproductions
	pairs := [][2]string{}
	for i := 0; i < len(out); i += 2 {
		pairs = append(pairs, [2]string{out[i], out[i+1]})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][1] < pairs[j][1] })
	out = out[:0]
	for _, pr := range pairs {
		out = append(out, pr[0], pr[1])
	}
	return out
}

func (p *project) ignored(rel string) bool {
	if rel == "Dockerfile" || rel == ".dockerignore" {
		return true
	}
	ign := false
	for _, r := range ignoreMenu {
		if p.ignore[r.pat] && r.match(rel) {
			ign = r.exclude
		}
	}
	return ign
}

// ---------- writing the project to disk ----------

func (p *project) writeAll(dir string) error {
	for _, d := range contextDirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
		os.Chmod(filepath.Join(dir, d), 0o755)
	}
	for name, f := range p.files {
		if err := writeCfile(dir, name, f); err != nil {
			return err
		}
	}
	if err := p.writeDockerfile(dir); err != nil {
		return err
	}
	return p.writeIgnore(dir)
}

func (p *project) writeDockerfile(dir string) error {
	return os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(strings.ReplaceAll(p.dockerfile(), "{{BASE}}", baseRef)), 0o644)
}

func (p *project) writeIgnore(dir string) error {
	return os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte(p.dockerignore()), 0o644)
}

func writeCfile(dir, name string, f *cfile) error {
	full := filepath.Join(dir, name)
	os.Remove(full)
	if f.link != "" {
		return os.Symlink(f.link, full)
	}
	if err := os.WriteFile(full, []byte(f.data), f.mode); err != nil {
		return err
	}
	return os.Chmod(full, f.mode)
}

// ---------- generation ----------

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.Intn(len(xs))] }

func genProject(rng *rand.Rand) *project {
	p := &project{files: map[string]*cfile{}, ignore: map[string]bool{}, args: map[string]string{}}
	for _, n := range []string{"a.txt", "b.txt", "src/x.txt", "src/y.txt", "src/sub/z.txt", "docs/n.txt", "keep.md", "readme.md"} {
		if protectedFiles[n] || rng.Intn(4) != 0 {
			mode := fs.FileMode(0o644)
			if rng.Intn(4) == 0 {
				mode = pick(rng, modePool)
			}
			p.files[n] = &cfile{mode: mode, data: pick(rng, contentPool)}
		}
	}
	p.files["lnk"] = &cfile{link: pick(rng, []string{"a.txt", "b.txt"})}
	if rng.Intn(2) == 0 {
		p.files["src/ln"] = &cfile{link: pick(rng, []string{"x.txt", "y.txt"})}
	}
	for _, r := range ignoreMenu {
		if rng.Intn(3) == 0 {
			p.ignore[r.pat] = true
		}
	}
	if rng.Intn(2) == 0 {
		p.args["V"] = pick(rng, []string{"1", "2"})
	}
	nStages := 1 + rng.Intn(3)
	for i := 0; i < nStages; i++ {
		s := &stageDef{name: fmt.Sprintf("s%d", i)}
		if i > 0 && rng.Intn(3) == 0 {
			s.base = fmt.Sprintf("s%d", rng.Intn(i))
		}
		p.stages = append(p.stages, s)
		p.genStage(rng, s, i == nStages-1)
	}
	return p
}

var ctxCopies = []struct{ srcs, dest string }{
	{"a.txt", "/app/"},
	{"a.txt b.txt", "/app/ab/"},
	{"*.txt", "/app/t/"},
	{"src", "/app/src/"},
	{"src/*.txt", "/app/st/"},
	{"docs", "/app/docs/"},
	{"lnk", "/app/"},
	{".", "/app/all/"},
	{"--chmod=0644 a.txt", "/app/c/"},
}

func (p *project) genStage(rng *rand.Rand, s *stageDef, last bool) {
	var kinds []string
	if rng.Intn(2) == 0 {
		kinds = append(kinds, "arg")
	}
	if rng.Intn(4) == 0 {
		kinds = append(kinds, "argW")
	}
	if rng.Intn(4) == 0 {
		kinds = append(kinds, "env")
	}
	if rng.Intn(6) == 0 {
		kinds = append(kinds, "workdir")
	}
	for n := 1 + rng.Intn(2); n > 0; n-- {
		kinds = append(kinds, "copy")
	}
	idx := len(p.stages) - 1
	if idx > 0 && (last || rng.Intn(2) == 0) {
		kinds = append(kinds, "from")
		if last && idx > 1 {
			kinds = append(kinds, "from")
		}
	}
	for n := 1 + rng.Intn(2); n > 0; n-- {
		kinds = append(kinds, "run")
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	// Keep at least one RUN reachable for COPY --from=/o/ consumers: every stage has one.
	for _, k := range kinds {
		var in *instr
		switch k {
		case "arg":
			in = &instr{kind: "arg", name: "V"}
			if rng.Intn(2) == 0 {
				d := pick(rng, []string{"1", "3"})
				in.def = &d
			}
		case "argW":
			d := "w"
			in = &instr{kind: "arg", name: "W", def: &d}
		case "env":
			in = &instr{kind: "env", text: "ENV E=${V:-none}"}
		case "workdir":
			in = &instr{kind: "workdir", text: "WORKDIR /w"}
		case "copy":
			c := pick(rng, ctxCopies)
			in = &instr{kind: "copy", dest: c.dest}
			srcs := c.srcs
			if strings.HasPrefix(srcs, "--chmod=0644 ") {
				in.chmod = 0o644
				srcs = strings.TrimPrefix(srcs, "--chmod=0644 ")
			}
			in.srcs = strings.Fields(srcs)
			in.text = "COPY " + c.srcs + " " + c.dest
		case "from":
			in = p.genFrom(rng, idx)
		case "run":
			in = p.genRun(rng, s)
		}
		if in == nil {
			continue
		}
		if in.kind == "arg" {
			in.text = "ARG " + in.name
			if in.def != nil {
				in.text += "=" + *in.def
			}
		}
		s.steps = append(s.steps, in)
	}
	hasRun := false
	for _, st := range s.steps {
		hasRun = hasRun || st.kind == "run"
	}
	if !hasRun {
		s.steps = append(s.steps, p.genRun(rng, s))
	}
}

// genFrom makes a COPY --from of an earlier stage, selecting something that stage always has.
func (p *project) genFrom(rng *rand.Rand, idx int) *instr {
	j := rng.Intn(idx)
	src := p.stages[j]
	var runs []string
	hasApp := false
	sim := p.simulate()
	for path := range sim.stages[src.name].fs {
		if strings.HasPrefix(path, "/app/") {
			hasApp = true
		}
	}
	for _, st := range src.steps {
		if st.kind == "run" {
			runs = append(runs, st.out)
		}
	}
	opts := []string{"/o/"}
	for _, r := range runs {
		opts = append(opts, r, r)
	}
	if hasApp {
		opts = append(opts, "/app/")
	}
	s := pick(rng, opts)
	dest := fmt.Sprintf("/f%d/", j)
	if s == "/app/" {
		dest = fmt.Sprintf("/a%d/", j)
	}
	return &instr{kind: "from", from: src.name, srcs: []string{s}, dest: dest,
		text: fmt.Sprintf("COPY --from=%s %s %s", src.name, s, dest)}
}

// genRun makes a RUN that reads a few paths the stage has (or may have) and writes /o/rN.
func (p *project) genRun(rng *rand.Rand, s *stageDef) *instr {
	p.nRun++
	return p.genRunTo(rng, s, fmt.Sprintf("/o/r%d", p.nRun))
}

// genRunTo makes a RUN writing out. It never reads out itself: `cat f > f` truncates f first, and
// busybox cat appending to the file it reads never ends.
func (p *project) genRunTo(rng *rand.Rand, s *stageDef, out string) *instr {
	sim := p.simulate()
	fsys := sim.stages[s.name].fs
	var files, dirs []string
	for pth, e := range fsys {
		if pth == out {
			continue
		}
		switch e.typ {
		case 'd':
			dirs = append(dirs, pth)
		default:
			files = append(files, pth)
		}
	}
	sort.Strings(files)
	sort.Strings(dirs)
	files = append(files, "/app/a.txt", "/app/src/x.txt", "/app/all/lnk")
	dirs = append(dirs, "/app", "/app/src", "/o")
	in := &instr{kind: "run", out: out}
	switch rng.Intn(6) {
	case 0, 1:
		in.run = "cat"
	case 2:
		in.run = "sha"
	case 3:
		in.run = "head"
	case 4:
		in.run = "ls"
	case 5:
		in.run = "echo"
	}
	switch in.run {
	case "cat", "sha":
		for n := 1 + rng.Intn(3); n > 0; n-- {
			in.paths = append(in.paths, pick(rng, files))
		}
	case "head":
		in.paths = []string{pick(rng, files)}
	case "ls":
		in.paths = []string{pick(rng, dirs)}
	}
	in.text = runText(in)
	return in
}

func runText(in *instr) string {
	ps := strings.Join(in.paths, " ")
	switch in.run {
	case "cat":
		return fmt.Sprintf("RUN mkdir -p /o && cat %s > %s 2>/dev/null; true", ps, in.out)
	case "sha":
		return fmt.Sprintf("RUN mkdir -p /o && sha256sum %s > %s 2>/dev/null; true", ps, in.out)
	case "head":
		return fmt.Sprintf("RUN mkdir -p /o && head -n 1 %s > %s 2>/dev/null; true", ps, in.out)
	case "ls":
		return fmt.Sprintf("RUN mkdir -p /o && ls -1A %s > %s 2>/dev/null; true", ps, in.out)
	default:
		return fmt.Sprintf(`RUN mkdir -p /o && echo "v=$V" > %s`, in.out)
	}
}

// ---------- edits ----------

// edit applies one random edit to the model and the context dir and describes it.
func (p *project) edit(rng *rand.Rand, dir string) (string, error) {
	for {
		desc, err, ok := p.tryEdit(rng, dir)
		if ok {
			return desc, err
		}
	}
}

func (p *project) regularFiles(unprotected bool) []string {
	var out []string
	for n, f := range p.files {
		if f.link == "" && (!unprotected || !protectedFiles[n]) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (p *project) freeNames() []string {
	var out []string
	for _, n := range extraNames {
		if _, ok := p.files[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

func (p *project) tryEdit(rng *rand.Rand, dir string) (string, error, bool) {
	switch rng.Intn(14) {
	case 0, 1: // edit content
		fs := p.regularFiles(false)
		n := pick(rng, fs)
		f := p.files[n]
		nd := pick(rng, contentPool)
		if nd == f.data {
			return "", nil, false
		}
		f.data = nd
		return fmt.Sprintf("edit %s to %q", n, nd), os.WriteFile(filepath.Join(dir, n), []byte(nd), f.mode), true
	case 2: // edit content keeping size and mtime (a checkout that preserves times)
		fs := p.regularFiles(false)
		n := pick(rng, fs)
		f := p.files[n]
		if len(f.data) == 0 {
			return "", nil, false
		}
		b := []byte(f.data)
		i := rng.Intn(len(b))
		if b[i] == '\n' {
			return "", nil, false
		}
		b[i] = byte('a' + rng.Intn(26))
		if string(b) == f.data {
			return "", nil, false
		}
		full := filepath.Join(dir, n)
		st, err := os.Stat(full)
		if err != nil {
			return "", err, true
		}
		f.data = string(b)
		if err := os.WriteFile(full, b, f.mode); err != nil {
			return "", err, true
		}
		return fmt.Sprintf("edit %s to %q keeping size and mtime", n, f.data), os.Chtimes(full, st.ModTime(), st.ModTime()), true
	case 3: // add
		free := p.freeNames()
		if len(free) == 0 {
			return "", nil, false
		}
		n := pick(rng, free)
		f := &cfile{mode: 0o644, data: pick(rng, contentPool)}
		p.files[n] = f
		return fmt.Sprintf("add %s (%q)", n, f.data), writeCfile(dir, n, f), true
	case 4: // delete
		var cands []string
		for n := range p.files {
			if !protectedFiles[n] {
				cands = append(cands, n)
			}
		}
		if len(cands) == 0 {
			return "", nil, false
		}
		sort.Strings(cands)
		n := pick(rng, cands)
		delete(p.files, n)
		return "delete " + n, os.Remove(filepath.Join(dir, n)), true
	case 5: // rename
		fs := p.regularFiles(true)
		free := p.freeNames()
		if len(fs) == 0 || len(free) == 0 {
			return "", nil, false
		}
		from, to := pick(rng, fs), pick(rng, free)
		p.files[to] = p.files[from]
		delete(p.files, from)
		return fmt.Sprintf("rename %s to %s", from, to), os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)), true
	case 6: // chmod
		fs := p.regularFiles(false)
		n := pick(rng, fs)
		f := p.files[n]
		m := pick(rng, modePool)
		if m == f.mode {
			return "", nil, false
		}
		f.mode = m
		return fmt.Sprintf("chmod %o %s", m, n), os.Chmod(filepath.Join(dir, n), m), true
	case 7: // toggle an ignore rule
		r := pick(rng, ignoreMenu)
		p.ignore[r.pat] = !p.ignore[r.pat]
		verb := "remove"
		if p.ignore[r.pat] {
			verb = "add"
		}
		return fmt.Sprintf("%s .dockerignore rule %q", verb, r.pat), p.writeIgnore(dir), true
	case 8: // build arg
		cur, ok := p.args["V"]
		vals := []string{"", "1", "2", "3"}
		v := pick(rng, vals)
		if (v == "" && !ok) || (ok && v == cur) {
			return "", nil, false
		}
		if v == "" {
			delete(p.args, "V")
			return "unset build arg V", nil, true
		}
		p.args["V"] = v
		return "build arg V=" + v, nil, true
	case 9: // touch without change
		var names []string
		for n := range p.files {
			names = append(names, n)
		}
		sort.Strings(names)
		n := pick(rng, names)
		full := filepath.Join(dir, n)
		if p.files[n].link != "" {
			t := time.Now().Add(time.Duration(rng.Intn(1000)) * time.Second)
			return "touch -h " + n, lchtimes(full, t), true
		}
		if rng.Intn(2) == 0 {
			// Rewrite the same bytes: new mtime and ctime, maybe a new inode.
			tmp := full + ".tmp"
			if err := os.WriteFile(tmp, []byte(p.files[n].data), p.files[n].mode); err != nil {
				return "", err, true
			}
			os.Chmod(tmp, p.files[n].mode)
			return "rewrite " + n + " unchanged (new inode)", os.Rename(tmp, full), true
		}
		t := time.Now().Add(time.Duration(1+rng.Intn(1000)) * time.Second)
		return "touch " + n, os.Chtimes(full, t, t), true
	case 10: // reorder two adjacent instructions
		s := pick(rng, p.stages)
		if len(s.steps) < 2 {
			return "", nil, false
		}
		i := rng.Intn(len(s.steps) - 1)
		if s.steps[i].text == s.steps[i+1].text {
			return "", nil, false
		}
		s.steps[i], s.steps[i+1] = s.steps[i+1], s.steps[i]
		return fmt.Sprintf("swap %q and %q in %s", s.steps[i+1].text, s.steps[i].text, s.name), p.writeDockerfile(dir), true
	case 11: // retarget a symlink
		if rng.Intn(2) == 0 {
			f := p.files["lnk"]
			t := "a.txt"
			if f.link == "a.txt" {
				t = "b.txt"
			}
			f.link = t
			return "ln -sf " + t + " lnk", writeCfile(dir, "lnk", f), true
		}
		f, ok := p.files["src/ln"]
		t := pick(rng, []string{"x.txt", "y.txt", "w.txt"})
		if ok && f.link == t {
			return "", nil, false
		}
		f = &cfile{link: t}
		p.files["src/ln"] = f
		return "ln -sf " + t + " src/ln", writeCfile(dir, "src/ln", f), true
	case 12: // change a RUN's command (same output file)
		var runs []*instr
		var where []*stageDef
		for _, s := range p.stages {
			for _, st := range s.steps {
				if st.kind == "run" {
					runs = append(runs, st)
					where = append(where, s)
				}
			}
		}
		i := rng.Intn(len(runs))
		old := runs[i]
		nr := p.genRunTo(rng, where[i], old.out)
		if nr.text == old.text {
			return "", nil, false
		}
		for j, st := range where[i].steps {
			if st == old {
				where[i].steps[j] = nr
			}
		}
		return fmt.Sprintf("change %q to %q", old.text, nr.text), p.writeDockerfile(dir), true
	case 13: // chmod twice back to the same mode (ctime changes only)
		fs := p.regularFiles(false)
		n := pick(rng, fs)
		full := filepath.Join(dir, n)
		if err := os.Chmod(full, 0o700); err != nil {
			return "", err, true
		}
		return "chmod " + n + " away and back", os.Chmod(full, p.files[n].mode), true
	}
	return "", nil, false
}

func lchtimes(p string, t time.Time) error {
	// os.Chtimes follows symlinks; a symlink's own times need utimensat(AT_SYMLINK_NOFOLLOW).
	return lutimes(p, t)
}

// ---------- oracle: simulate the build ----------

type fent struct {
	typ  byte // 'f', 'd', 'l'
	mode fs.FileMode
	data string
	link string
}

func (e *fent) String() string {
	switch e.typ {
	case 'd':
		return fmt.Sprintf("d %o", e.mode)
	case 'l':
		return "l " + e.link
	}
	return fmt.Sprintf("f %o %q", e.mode, e.data)
}

// simFS holds only what the Dockerfile creates (absolute paths); the base image is constant.
type simFS map[string]*fent

func (f simFS) clone() simFS {
	c := simFS{}
	for k, v := range f {
		c[k] = v
	}
	return c
}

type simStep struct {
	pos    int
	text   string
	key    string // abstract cache key
	inputs string // what the key covers, for reports
}

type simStage struct {
	def    *stageDef
	steps  []simStep
	fs     simFS
	chain  string
	cfgEnv []string // image config env: [K=V], in place order
	env    simEnv   // build state env at the end of the stage
	cwd    string
}

type simResult struct {
	stages    map[string]*simStage
	reachable map[string]bool
}

func hashStr(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// envList mirrors BuildKit's llb.EnvList: setting a key again moves it to the end.
type simEnv []string

func (e simEnv) set(k, v string) simEnv {
	out := simEnv{}
	for _, kv := range e {
		if key, _, _ := strings.Cut(kv, "="); key != k {
			out = append(out, kv)
		}
	}
	return append(out, k+"="+v)
}

func (e simEnv) get(k string) (string, bool) {
	for _, kv := range e {
		if key, v, _ := strings.Cut(kv, "="); key == k {
			return v, true
		}
	}
	return "", false
}

type landing struct {
	rel string
	e   *fent
}

func selFP(sel []landing) string {
	var b strings.Builder
	for _, l := range sel {
		fmt.Fprintf(&b, "%s=%s\n", l.rel, l.e)
	}
	return b.String()
}

func (p *project) simulate() *simResult {
	res := &simResult{stages: map[string]*simStage{}, reachable: map[string]bool{}}
	for _, sd := range p.stages {
		st := &simStage{def: sd, fs: simFS{}, chain: "image", cfgEnv: []string{"PATH"}, cwd: "/"}
		if sd.base != "" {
			parent := res.stages[sd.base]
			st.fs = parent.fs.clone()
			st.chain = parent.chain
			st.cfgEnv = slices.Clone(parent.cfgEnv)
			st.cwd = parent.cwd
		}
		// A stage FROM another stage inherits its build state, ARG values included (as BuildKit's
		// llb state does), and then re-applies the config env on top.
		env := simEnv{}
		if sd.base != "" {
			env = slices.Clone(res.stages[sd.base].env)
		}
		for _, kv := range st.cfgEnv {
			k, v, _ := strings.Cut(kv, "=")
			env = env.set(k, v)
		}
		pos := 1
		for _, in := range sd.steps {
			switch in.kind {
			case "arg":
				var val *string
				if v, ok := p.args[in.name]; ok {
					val = &v
				} else if in.def != nil {
					val = in.def
				}
				if val != nil {
					env = env.set(in.name, *val)
				}
			case "env":
				v, _ := env.get("V")
				if v == "" {
					v = "none"
				}
				env = env.set("E", v)
				found := false
				for i, kv := range st.cfgEnv {
					if strings.HasPrefix(kv, "E=") {
						st.cfgEnv[i], found = "E="+v, true
					}
				}
				if !found {
					st.cfgEnv = append(st.cfgEnv, "E="+v)
				}
			case "workdir":
				pos++
				key := hashStr("WORKDIR", "/w", st.chain)
				st.steps = append(st.steps, simStep{pos: pos, text: in.text, key: key, inputs: "parent " + st.chain})
				if _, ok := st.fs["/w"]; !ok {
					st.fs["/w"] = &fent{typ: 'd', mode: 0o755}
				}
				st.chain = hashStr(st.chain, "workdir /w")
				st.cwd = "/w"
			case "copy", "from":
				pos++
				var sel []landing
				links := "" // followed top-level symlinks: read (so keyed), but not in the layer
				if in.kind == "copy" {
					sel, links = p.ctxSelect(in.srcs)
				} else {
					sel = stageSelect(res.stages[in.from].fs, in.srcs[0])
				}
				// With --chmod the source mode is not read (strata keys what lands in the layer;
				// BuildKit keys the source mode too, which is a needless miss strata avoids).
				if in.chmod != 0 {
					for i, l := range sel {
						if l.e.typ == 'f' {
							sel[i].e = &fent{typ: 'f', mode: in.chmod, data: l.e.data}
						}
					}
				}
				key := hashStr("COPY", in.text, selFP(sel), links, st.chain)
				st.steps = append(st.steps, simStep{pos: pos, text: in.text, key: key,
					inputs: fmt.Sprintf("parent %s, links %q, files:\n%s", st.chain, links, indent(selFP(sel)))})
				st.fs.apply(in.dest, sel)
				st.chain = hashStr(st.chain, "copy", in.text, selFP(sel))
			case "run":
				pos++
				envSig := strings.Join(env, "\x00")
				key := hashStr("RUN", in.text, envSig, st.cwd, st.chain)
				st.steps = append(st.steps, simStep{pos: pos, text: in.text, key: key,
					inputs: fmt.Sprintf("parent %s, env %q, cwd %s", st.chain, []string(env), st.cwd)})
				if _, ok := st.fs["/o"]; !ok { // mkdir -p /o runs first
					st.fs["/o"] = &fent{typ: 'd', mode: 0o755}
				}
				out := st.fs.runOutput(in, env)
				st.fs[in.out] = &fent{typ: 'f', mode: 0o644, data: out}
				st.chain = hashStr(st.chain, "run", in.out, out)
			}
		}
		st.env = env
		res.stages[sd.name] = st
	}
	// Only stages the target needs are built.
	var visit func(name string)
	visit = func(name string) {
		if res.reachable[name] {
			return
		}
		res.reachable[name] = true
		st := res.stages[name]
		if st.def.base != "" {
			visit(st.def.base)
		}
		for _, in := range st.def.steps {
			if in.kind == "from" {
				visit(in.from)
			}
		}
	}
	visit(p.stages[len(p.stages)-1].name)
	return res
}

func indent(s string) string {
	return "      " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n      ")
}

// children lists the direct entries of a context dir ("" = root): files, symlinks and dirs.
func (p *project) children(dir string) []string {
	set := map[string]bool{}
	add := func(n string) {
		d := path.Dir(n)
		if d == "." {
			d = ""
		}
		if d == dir {
			set[n] = true
		}
	}
	for n := range p.files {
		add(n)
	}
	for _, d := range contextDirs {
		add(d)
	}
	var out []string
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (p *project) isDir(rel string) bool { return slices.Contains(contextDirs, rel) }

func (p *project) entry(rel string) *fent {
	if p.isDir(rel) {
		return &fent{typ: 'd', mode: 0o755}
	}
	f := p.files[rel]
	if f == nil {
		return nil
	}
	if f.link != "" {
		return &fent{typ: 'l', link: f.link}
	}
	return &fent{typ: 'f', mode: f.mode, data: f.data}
}

// walk lists the non-ignored entries below dir, relative to it, parents first.
func (p *project) walk(dir string, prefix string, out *[]landing) {
	for _, c := range p.children(dir) {
		if p.ignored(c) {
			continue // no menu exception re-includes anything below an ignored directory
		}
		e := p.entry(c)
		rel := prefix + path.Base(c)
		*out = append(*out, landing{rel, e})
		if e.typ == 'd' {
			p.walk(c, rel+"/", out)
		}
	}
}

// ctxSelect models BuildKit's COPY source resolution on the context: a named file lands under its
// base name (a top-level symlink is followed), a directory contributes its contents, a wildcard
// each match. links lists the followed symlinks with their targets: the step reads them, so a
// retarget is a legitimate miss even when the target has the same content.
func (p *project) ctxSelect(srcs []string) (out []landing, links string) {
	for _, src := range srcs {
		var named []string
		switch {
		case src == ".":
			p.walk("", "", &out)
			continue
		case strings.Contains(src, "*"):
			dir := path.Dir(src)
			if dir == "." {
				dir = ""
			}
			for _, c := range p.children(dir) {
				if ok, _ := path.Match(src, c); ok && !p.ignored(c) {
					named = append(named, c)
				}
			}
		default:
			named = []string{src}
		}
		for _, n := range named {
			e := p.entry(n)
			if e != nil && e.typ == 'l' {
				links += n + "->" + e.link + "\n"
				e = p.entry(path.Join(path.Dir(n), e.link))
			}
			if e == nil {
				continue // the generator never lets this happen (it would fail the build)
			}
			if e.typ == 'd' {
				p.walk(n, "", &out)
				continue
			}
			out = append(out, landing{path.Base(n), e})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out, links
}

// stageSelect selects "/dir/" (its contents) or a file from a stage's filesystem.
func stageSelect(f simFS, src string) []landing {
	var out []landing
	if strings.HasSuffix(src, "/") {
		for p, e := range f {
			if strings.HasPrefix(p, src) {
				out = append(out, landing{strings.TrimPrefix(p, src), e})
			}
		}
	} else if e, ok := f[src]; ok {
		out = append(out, landing{path.Base(src), e})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out
}

func (f simFS) apply(dest string, sel []landing) {
	f.mkdirAll(strings.TrimSuffix(dest, "/"))
	for _, l := range sel {
		full := path.Join(dest, l.rel)
		f.mkdirAll(path.Dir(full))
		if l.e.typ == 'd' {
			if cur, ok := f[full]; ok && cur.typ == 'd' {
				continue
			}
		}
		f[full] = l.e
	}
}

func (f simFS) mkdirAll(d string) {
	for d != "/" && d != "." {
		if _, ok := f[d]; !ok {
			f[d] = &fent{typ: 'd', mode: 0o755}
		}
		d = path.Dir(d)
	}
}

// resolve follows symlinks like the kernel would (only paths the Dockerfile created exist here).
func (f simFS) resolve(p string) *fent {
	for hops := 0; hops < 16; hops++ {
		parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
		cur := "/"
		restart := false
		for i, part := range parts {
			next := path.Join(cur, part)
			e, ok := f[next]
			if !ok {
				return nil
			}
			if e.typ == 'l' {
				t := e.link
				if !path.IsAbs(t) {
					t = path.Join(cur, t)
				}
				p = path.Join(append([]string{t}, parts[i+1:]...)...)
				restart = true
				break
			}
			if i == len(parts)-1 {
				return e
			}
			cur = next
		}
		if !restart {
			return nil
		}
	}
	return nil
}

// runOutput is exactly what the generated RUN writes to its output file.
func (f simFS) runOutput(in *instr, env simEnv) string {
	var b strings.Builder
	switch in.run {
	case "cat":
		for _, p := range in.paths {
			if e := f.resolve(p); e != nil && e.typ == 'f' {
				b.WriteString(e.data)
			}
		}
	case "sha":
		for _, p := range in.paths {
			if e := f.resolve(p); e != nil && e.typ == 'f' {
				sum := sha256.Sum256([]byte(e.data))
				fmt.Fprintf(&b, "%x  %s\n", sum, p)
			}
		}
	case "head":
		if e := f.resolve(in.paths[0]); e != nil && e.typ == 'f' {
			line, _, found := strings.Cut(e.data, "\n")
			b.WriteString(line)
			if found {
				b.WriteString("\n")
			}
		}
	case "ls":
		dir := path.Clean(in.paths[0])
		if e := f.resolve(dir); e != nil && e.typ == 'd' {
			var names []string
			for p := range f {
				if path.Dir(p) == dir {
					names = append(names, path.Base(p))
				}
			}
			if path.Dir(in.out) == dir {
				// The shell creates the output file before ls runs.
				names = append(names, path.Base(in.out))
			}
			sort.Strings(names)
			for _, n := range names {
				b.WriteString(n + "\n")
			}
		}
	case "echo":
		v, _ := env.get("V")
		b.WriteString("v=" + v + "\n")
	}
	return b.String()
}
