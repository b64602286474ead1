package check

import (
	"path"
	"regexp"
	"strings"
)

// An ecosystem is one package manager as the rules see it: the manifests its resolve step reads
// and where it keeps downloads.
type ecosystem struct {
	name string
	// manifests are globs of the files the resolve step reads, relative to the project
	// directory; only the first must exist.
	manifests []string
	// cache are the download caches to mount (first one suggested).
	cache []string
	// resolve is the dependency-only command a build step can be preceded by.
	resolve string
}

var ecosystems = map[string]*ecosystem{
	"npm":      {name: "npm", manifests: []string{"package.json", "package-lock.json", "npm-shrinkwrap.json"}, cache: []string{"/root/.npm", "/home/node/.npm", ".npm"}},
	"yarn":     {name: "yarn", manifests: []string{"package.json", "yarn.lock", ".yarnrc.yml"}, cache: []string{"/usr/local/share/.cache/yarn", "/root/.cache/yarn", "/root/.yarn", ".yarn/cache", "/home/node/.cache/yarn"}},
	"pnpm":     {name: "pnpm", manifests: []string{"package.json", "pnpm-lock.yaml", "pnpm-workspace.yaml"}, cache: []string{"/root/.local/share/pnpm/store", "/pnpm/store", "/root/.cache/pnpm"}},
	"bun":      {name: "bun", manifests: []string{"package.json", "bun.lock*"}, cache: []string{"/root/.bun/install/cache"}},
	"pip":      {name: "pip", cache: []string{"/root/.cache/pip", "/root/.cache"}},
	"poetry":   {name: "poetry", manifests: []string{"pyproject.toml", "poetry.lock"}, cache: []string{"/root/.cache/pypoetry", "/root/.cache"}},
	"pipenv":   {name: "pipenv", manifests: []string{"Pipfile", "Pipfile.lock"}, cache: []string{"/root/.cache/pipenv", "/root/.cache/pip", "/root/.cache"}},
	"uv":       {name: "uv", manifests: []string{"pyproject.toml", "uv.lock"}, cache: []string{"/root/.cache/uv", "/root/.cache"}},
	"bundler":  {name: "bundler", manifests: []string{"Gemfile", "Gemfile.lock"}, cache: []string{"/usr/local/bundle/cache", "/root/.bundle/cache", "/root/.gem"}},
	"go":       {name: "go", manifests: []string{"go.mod", "go.sum"}, cache: []string{"/go/pkg/mod", "/root/go/pkg/mod", "/root/.cache/go-build"}, resolve: "go mod download"},
	"cargo":    {name: "cargo", manifests: []string{"Cargo.toml", "Cargo.lock"}, cache: []string{"/usr/local/cargo/registry", "/root/.cargo/registry", "/usr/local/cargo/git"}, resolve: "mkdir -p src && echo 'fn main() {}' > src/main.rs && cargo fetch && rm -rf src"},
	"maven":    {name: "maven", manifests: []string{"pom.xml"}, cache: []string{"/root/.m2", "/root/.m2/repository", "/home/maven/.m2"}, resolve: "mvn -B dependency:go-offline"},
	"gradle":   {name: "gradle", manifests: []string{"build.gradle*", "settings.gradle*", "gradle.properties"}, cache: []string{"/root/.gradle", "/home/gradle/.gradle", "/home/gradle/.gradle/caches", "/root/.gradle/caches"}, resolve: "gradle dependencies --no-daemon"},
	"composer": {name: "composer", manifests: []string{"composer.json", "composer.lock"}, cache: []string{"/root/.composer/cache", "/tmp/cache", "/root/.cache/composer", "/var/www/.composer/cache"}},
	"dotnet":   {name: "dotnet", manifests: []string{"*.csproj", "*.sln"}, cache: []string{"/root/.nuget/packages"}, resolve: "dotnet restore"},
	"mix":      {name: "mix", manifests: []string{"mix.exs", "mix.lock"}, cache: []string{"/root/.hex", "/root/.mix", "/app/deps"}},
}

// use is one package-manager invocation found in a RUN.
type use struct {
	eco *ecosystem
	// install: a dependency-only install (npm ci, pip install -r, go mod download…); otherwise a
	// build that resolves dependencies as a side effect (go build, mvn package…).
	install bool
	// project: the step installs the project itself too (poetry install without --no-root,
	// uv sync without --no-install-project, pip install .), so it needs the sources. projectOff
	// is the flag that turns that off, when the tool has one.
	project    bool
	projectOff string
	manifests  []string // manifests the command names (pip -r FILE)
	seg        int      // index of the command segment
	wrapper    string   // ./mvnw, ./gradlew: files the resolve step also needs
	// dir is where the command runs when not in the RUN's working directory: a `cd DIR` earlier
	// in the same RUN, or the tool's own directory flag (npm --prefix, yarn --cwd…). Relative
	// paths are from the RUN's working directory.
	dir string
}

var segSplit = regexp.MustCompile(`&&|\|\||;|\||\n`)

// segments splits a shell command into simple commands (not quote-aware; good enough for the
// install lines Dockerfiles hold).
func segments(s string) []string {
	s = strings.ReplaceAll(s, "\\\n", " ")
	return segSplit.Split(s, -1)
}

// words returns a segment's words, unquoted, without leading VAR=value assignments, sudo and
// env.
func words(seg string) []string {
	f := strings.Fields(seg)
	for i, w := range f {
		f[i] = unquote(w)
	}
	for len(f) > 0 {
		switch {
		case strings.Contains(f[0], "=") && !strings.HasPrefix(f[0], "-"):
			f = f[1:]
		case f[0] == "sudo" || f[0] == "env" || f[0] == "exec" || f[0] == "time" || f[0] == "then" || f[0] == "else" || f[0] == "do" || f[0] == "{" || f[0] == "(":
			f = f[1:]
		default:
			return f
		}
	}
	return f
}

// unquote removes the quotes around a whole word, as the shell would ("./App/App.csproj").
func unquote(w string) string {
	if len(w) >= 2 && (w[0] == '"' || w[0] == '\'') && w[len(w)-1] == w[0] {
		return w[1 : len(w)-1]
	}
	return w
}

func has(f []string, vals ...string) bool {
	for _, w := range f {
		for _, v := range vals {
			if w == v || strings.HasPrefix(w, v+"=") {
				return true
			}
		}
	}
	return false
}

// positional returns the non-flag words after the first n.
func positional(f []string, n int) []string {
	var out []string
	for i := n; i < len(f); i++ {
		if !strings.HasPrefix(f[i], "-") {
			out = append(out, f[i])
		}
	}
	return out
}

// uses finds the package-manager invocations in a RUN's text. A `cd DIR` segment moves the
// commands after it (`cd frontend && npm ci` installs frontend's manifests); subshells are not
// tracked, so a `cd` inside one is taken to last.
func uses(run string) []use {
	var out []use
	cd := ""
	for i, seg := range segments(run) {
		f := words(seg)
		if len(f) == 0 {
			continue
		}
		if f[0] == "cd" {
			if len(f) == 2 && f[1] != "-" {
				cd = joinDir(cd, f[1])
			}
			continue
		}
		u := classify(f)
		if u.eco != nil {
			u.seg = i
			u.dir = joinDir(cd, u.dir)
			out = append(out, u)
		}
	}
	return out
}

// joinDir applies a change of directory to dir ("" = where the RUN starts).
func joinDir(dir, to string) string {
	switch {
	case to == "" || to == ".":
		return dir
	case strings.HasPrefix(to, "/") || dir == "":
		return path.Clean(to)
	}
	return path.Join(dir, to)
}

// wd returns the absolute directory the command runs in, "" when unknown.
func (u use) wd(R *instr) string {
	if u.dir == "" {
		return R.wd
	}
	return R.abs(u.dir)
}

// dirFlag removes a directory option and its value (`--prefix DIR`, `--prefix=DIR`) from f and
// returns the value, so that the value is not read as a package name.
func dirFlag(f []string, names ...string) (string, []string) {
	dir := ""
	out := make([]string, 0, len(f))
	for i := 0; i < len(f); i++ {
		matched := false
		for _, n := range names {
			if f[i] == n && i+1 < len(f) {
				dir, matched = f[i+1], true
				i++
				break
			}
			if strings.HasPrefix(f[i], n+"=") {
				dir, matched = strings.TrimPrefix(f[i], n+"="), true
				break
			}
		}
		if !matched {
			out = append(out, f[i])
		}
	}
	return dir, out
}

// npmInstall and npmCI are npm's documented names for install and ci.
var npmInstall = map[string]bool{"install": true, "i": true, "add": true, "in": true, "ins": true, "inst": true, "insta": true, "instal": true, "isnt": true, "isnta": true, "isntal": true, "isntall": true,
	"ci": true, "clean-install": true, "ic": true, "install-clean": true, "isntall-clean": true}

func classify(f []string) use {
	cmd := path.Base(f[0])
	sub := ""
	if len(f) > 1 {
		sub = f[1]
	}
	switch cmd {
	case "npm":
		dir, g := dirFlag(f, "--prefix", "-C")
		if len(g) > 1 && npmInstall[g[1]] && !has(g, "-g", "--global") && len(positional(g, 2)) == 0 {
			return use{eco: ecosystems["npm"], install: true, dir: dir}
		}
	case "yarn":
		dir, g := dirFlag(f, "--cwd")
		sub = ""
		if len(g) > 1 {
			sub = g[1]
		}
		if (len(g) == 1 || sub == "install" || strings.HasPrefix(sub, "--")) && !has(g, "global") {
			return use{eco: ecosystems["yarn"], install: true, dir: dir}
		}
	case "pnpm":
		dir, g := dirFlag(f, "--dir", "-C")
		if len(g) > 1 && (g[1] == "install" || g[1] == "i" || g[1] == "fetch") && len(positional(g, 2)) == 0 {
			return use{eco: ecosystems["pnpm"], install: true, dir: dir}
		}
	case "bun":
		dir, g := dirFlag(f, "--cwd")
		if len(g) > 1 && (g[1] == "install" || g[1] == "i") && len(positional(g, 2)) == 0 {
			return use{eco: ecosystems["bun"], install: true, dir: dir}
		}
	case "pip", "pip3", "python", "python3":
		if cmd == "python" || cmd == "python3" {
			if len(f) < 4 || f[1] != "-m" || (f[2] != "pip" && f[2] != "pip3") {
				return use{}
			}
			f = f[2:]
			sub = f[1]
		}
		if sub != "install" {
			return use{}
		}
		var reqs []string
		for i := 2; i < len(f); i++ {
			switch {
			case (f[i] == "-r" || f[i] == "--requirement" || f[i] == "-c" || f[i] == "--constraint") && i+1 < len(f):
				reqs = append(reqs, f[i+1])
				i++
			case strings.HasPrefix(f[i], "--requirement="):
				reqs = append(reqs, strings.TrimPrefix(f[i], "--requirement="))
			case strings.HasPrefix(f[i], "-r") && len(f[i]) > 2:
				reqs = append(reqs, f[i][2:])
			}
		}
		if len(reqs) > 0 {
			return use{eco: ecosystems["pip"], install: true, manifests: reqs}
		}
		for _, p := range positional(f, 2) {
			if p == "." || strings.HasPrefix(p, "./") || p == "-e" {
				// installs the project itself: needs its sources, no ordering to fix
				return use{eco: ecosystems["pip"], install: true, project: true}
			}
		}
	case "poetry":
		if (sub == "install" || sub == "sync") && !has(f, "--only-root") {
			return use{eco: ecosystems["poetry"], install: true, project: !has(f, "--no-root"), projectOff: "--no-root"}
		}
	case "pipenv":
		if sub == "install" || sub == "sync" {
			if len(positional(f, 2)) == 0 {
				return use{eco: ecosystems["pipenv"], install: true}
			}
		}
	case "uv":
		if sub == "sync" {
			return use{eco: ecosystems["uv"], install: true, project: !has(f, "--no-install-project", "--no-install-workspace"), projectOff: "--no-install-project"}
		}
		if sub == "pip" && len(f) > 2 && (f[2] == "install" || f[2] == "sync") {
			var reqs []string
			for i := 3; i < len(f); i++ {
				if (f[i] == "-r" || f[i] == "--requirement") && i+1 < len(f) {
					reqs = append(reqs, f[i+1])
					i++
				} else if f[2] == "sync" && !strings.HasPrefix(f[i], "-") {
					reqs = append(reqs, f[i])
				}
			}
			if len(reqs) > 0 {
				return use{eco: ecosystems["uv"], install: true, manifests: reqs}
			}
		}
	case "bundle", "bundler":
		if sub == "install" || len(f) == 1 {
			return use{eco: ecosystems["bundler"], install: true}
		}
	case "go":
		if sub == "mod" && len(f) > 2 && f[2] == "download" {
			return use{eco: ecosystems["go"], install: true}
		}
		if (sub == "build" || sub == "install" || sub == "test" || sub == "vet" || sub == "generate") && !has(f, "-mod=vendor") {
			return use{eco: ecosystems["go"]}
		}
	case "cargo":
		if sub == "fetch" {
			return use{eco: ecosystems["cargo"], install: true}
		}
		if sub == "chef" && len(f) > 2 && f[2] == "cook" {
			return use{eco: ecosystems["cargo"], install: true, manifests: []string{"recipe.json"}}
		}
		if sub == "build" || sub == "test" || (sub == "install" && has(f, "--path")) {
			return use{eco: ecosystems["cargo"]}
		}
	case "mvn", "mvnw":
		wrapper := ""
		if cmd == "mvnw" {
			wrapper = f[0]
		}
		for _, w := range f[1:] {
			if strings.Contains(w, "go-offline") || strings.Contains(w, "dependency:resolve") || strings.Contains(w, "resolve-dependencies") {
				return use{eco: ecosystems["maven"], install: true, wrapper: wrapper}
			}
		}
		if len(positional(f, 1)) > 0 {
			return use{eco: ecosystems["maven"], wrapper: wrapper}
		}
	case "gradle", "gradlew":
		wrapper := ""
		if cmd == "gradlew" {
			wrapper = f[0]
		}
		pos := positional(f, 1)
		if len(pos) == 1 && pos[0] == "dependencies" || has(f, "--refresh-dependencies") && len(pos) == 0 {
			return use{eco: ecosystems["gradle"], install: true, wrapper: wrapper}
		}
		if len(pos) > 0 {
			return use{eco: ecosystems["gradle"], wrapper: wrapper}
		}
	case "composer":
		dir, g := dirFlag(f, "--working-dir", "-d")
		if len(g) > 1 && (g[1] == "install" || g[1] == "update") {
			return use{eco: ecosystems["composer"], install: true, dir: dir}
		}
	case "dotnet":
		if sub == "restore" {
			// Options that take a value, so the value is not read as the project to restore.
			_, g := dirFlag(f, "-r", "--runtime", "-s", "--source", "-a", "--arch", "--os", "--packages", "--configfile", "-v", "--verbosity", "--lock-file-path")
			return use{eco: ecosystems["dotnet"], install: true, manifests: positional(g, 2)}
		}
		if (sub == "publish" || sub == "build" || sub == "test") && !has(f, "--no-restore") {
			return use{eco: ecosystems["dotnet"]}
		}
	case "mix":
		if sub == "deps.get" {
			return use{eco: ecosystems["mix"], install: true}
		}
	}
	return use{}
}

// cacheMounted reports whether a RUN mounts a cache: any cache mount counts, since caches are
// often put in custom places with an environment variable pointing there.
func cacheMounted(in *instr) bool {
	for _, m := range in.mounts {
		if m.Type == "cache" {
			return true
		}
	}
	return false
}

// cacheTargets returns the RUN's cache-mount targets, resolved.
func cacheTargets(in *instr) []string {
	var out []string
	for _, m := range in.mounts {
		if m.Type == "cache" {
			out = append(out, in.abs(m.Target))
		}
	}
	return out
}
