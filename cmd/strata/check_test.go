package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// npmScript stands in for npm in the busybox image: it reads the manifest the way an install
// does, so the step depends on package.json and nothing else.
const npmScript = "#!/bin/sh\nset -e\ntest -f package.json\nmkdir -p node_modules\ncp package.json node_modules/.installed\necho \"npm $*: installed\"\n"

const naiveNode = `FROM {{BASE}}
COPY --chmod=755 npm /bin/npm
WORKDIR /app
# the whole project
COPY . .
RUN npm ci
CMD ["cat", "/app/app.js"]
`

// stateOf returns the state of the one step whose display text contains substr.
func stateOf(t *testing.T, out, substr string) string {
	t.Helper()
	for name, st := range stepStates(out) {
		if strings.Contains(name, substr) {
			return st
		}
	}
	t.Fatalf("no step %q in\n%s", substr, out)
	return ""
}

func TestCheckExitCodesAndFormats(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("node", map[string]string{"Dockerfile": naiveNode, "npm": npmScript,
		"package.json": `{"name":"app"}` + "\n", "package-lock.json": "{}\n", "app.js": "v1\n"})

	r := e.run("check", ctx)
	if r.code != 1 || !r.has("STR001") || !r.has(filepath.Join(ctx, "Dockerfile")+":5:") {
		t.Fatalf("check: exit %d, want 1 with STR001 at line 5\n%s", r.code, r.out)
	}
	if r := e.run("check", "--fail-on=error", ctx); r.code != 0 {
		t.Fatalf("--fail-on=error: exit %d, want 0 (STR001 is a warning)\n%s", r.code, r.out)
	}
	r = e.run("check", "--format=json", "--fail-on=none", ctx)
	var rep struct {
		Findings []struct {
			Rule     string `json:"rule"`
			Line     int    `json:"line"`
			Severity string `json:"severity"`
		} `json:"findings"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &rep) != nil || len(rep.Findings) == 0 || rep.Findings[0].Rule != "STR001" || rep.Findings[0].Line != 5 {
		t.Fatalf("json: exit %d\n%s", r.code, r.out)
	}
	if r := e.run("check", "--format=sarif", "--fail-on=none", ctx); r.code != 0 || !r.has(`"version": "2.1.0"`) {
		t.Fatalf("sarif: exit %d\n%s", r.code, r.out)
	}
	if r := e.run("check", "-f", filepath.Join(ctx, "missing"), ctx); r.code != 2 {
		t.Fatalf("missing Dockerfile: exit %d, want 2\n%s", r.code, r.out)
	}
	bad := e.project("bad", map[string]string{"Dockerfile": "FROM x\nCOPY\n"})
	if r := e.run("check", bad); r.code != 2 || !r.has("Dockerfile:2") {
		t.Fatalf("parse error: exit %d, want 2 naming Dockerfile:2\n%s", r.code, r.out)
	}
}

// TestCheckFixKeepsTheInstallCached: the original re-runs the install after a source edit;
// after --fix the same edit leaves it cached, and --diff showed exactly that rewrite.
func TestCheckFixKeepsTheInstallCached(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("node", map[string]string{"Dockerfile": naiveNode, "npm": npmScript,
		"package.json": `{"name":"app"}` + "\n", "package-lock.json": "{}\n", "app.js": "v1\n"})
	df := filepath.Join(ctx, "Dockerfile")
	orig := readFile(t, df)

	// the original: a source edit re-runs the install
	e.build("-t", "orig", ctx)
	writeCtx(t, ctx, "app.js", "v2\n")
	if st := stateOf(t, e.build("-t", "orig", ctx).out, "RUN npm ci"); st != "MISS" {
		t.Fatalf("original Dockerfile: install %s after a source edit, want MISS", st)
	}

	r := e.run("check", "--diff", ctx)
	if r.code != 0 {
		t.Fatalf("--diff: exit %d\n%s", r.code, r.out)
	}
	for _, l := range []string{"--- a" + df + "\n", "+COPY package.json package-lock.json ./\n", "+RUN --mount=type=cache,target=/root/.npm npm ci\n", "-RUN npm ci\n", " # the whole project\n"} {
		if !strings.Contains(r.out, l) {
			t.Errorf("--diff lacks %q:\n%s", l, r.out)
		}
	}
	if readFile(t, df) != orig {
		t.Fatal("--diff changed the Dockerfile")
	}

	if r := e.run("check", "--fix", ctx); r.code != 0 {
		t.Fatalf("--fix: exit %d, want 0 (nothing left)\n%s", r.code, r.out)
	}
	want := strings.ReplaceAll(`FROM {{BASE}}
COPY --chmod=755 npm /bin/npm
WORKDIR /app
# the whole project
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci
COPY . .
CMD ["cat", "/app/app.js"]
`, "{{BASE}}", baseRef)
	if got := readFile(t, df); got != want {
		t.Fatalf("--fix wrote\n%s\nwant\n%s", got, want)
	}

	e.build("-t", "fixed", ctx)
	writeCtx(t, ctx, "app.js", "v3\n")
	out := e.build("-t", "fixed", ctx).out
	if st := stateOf(t, out, "npm ci"); st != "CACHED" {
		t.Fatalf("fixed Dockerfile: install %s after a source edit, want CACHED\n%s", st, out)
	}
	if st := stateOf(t, out, "COPY . ."); st != "MISS" {
		t.Fatalf("fixed Dockerfile: COPY . . %s after a source edit, want MISS", st)
	}
	// and a manifest edit still re-runs it
	writeCtx(t, ctx, "package.json", `{"name":"app","version":"2"}`+"\n")
	if st := stateOf(t, e.build("-t", "fixed", ctx).out, "npm ci"); st != "MISS" {
		t.Fatalf("fixed Dockerfile: install %s after a manifest edit, want MISS", st)
	}
}

// mvnScript stands in for Maven: go-offline needs every module's POM (as the real one does),
// package needs the sources.
const mvnScript = `#!/bin/sh
set -e
case "$*" in
*go-offline*)
	for m in $(sed -n 's:.*<module>\(.*\)</module>.*:\1:p' pom.xml); do test -f "$m/pom.xml"; done
	echo "resolved $(cat pom.xml */pom.xml | wc -c)";;
*)
	for m in $(sed -n 's:.*<module>\(.*\)</module>.*:\1:p' pom.xml); do cat "$m"/src/*; done > /build/app.jar;;
esac
`

// TestCheckFixMavenMultiModule: the fix resolves with every module's POM before the sources,
// so a source edit leaves the resolve step cached.
func TestCheckFixMavenMultiModule(t *testing.T) {
	e := newEnv(t)
	pom := "<project>\n  <modules>\n    <module>core</module>\n    <module>app</module>\n  </modules>\n</project>\n"
	ctx := e.project("maven", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY --chmod=755 mvn /bin/mvn\nWORKDIR /build\nCOPY . .\nRUN mvn -B package\n",
		"mvn":        mvnScript, "pom.xml": pom, "core/pom.xml": "<project/>\n", "app/pom.xml": "<project/>\n",
		"core/src/Core.java": "class Core {}\n", "app/src/App.java": "class App {}\n"})
	df := filepath.Join(ctx, "Dockerfile")
	if r := e.run("check", ctx); r.code != 1 || !r.has("STR001") {
		t.Fatalf("check: exit %d, want 1 with STR001\n%s", r.code, r.out)
	}
	if r := e.run("check", "--fix", ctx); r.code != 0 {
		t.Fatalf("--fix: exit %d\n%s", r.code, r.out)
	}
	want := "FROM " + baseRef + "\nCOPY --chmod=755 mvn /bin/mvn\nWORKDIR /build\nCOPY pom.xml ./\nCOPY core/pom.xml core/\nCOPY app/pom.xml app/\n" +
		"RUN --mount=type=cache,target=/root/.m2 mvn -B dependency:go-offline\nCOPY . .\nRUN mvn -B package\n"
	if got := readFile(t, df); got != want {
		t.Fatalf("--fix wrote\n%s\nwant\n%s", got, want)
	}
	e.build("-t", "mvn", ctx)
	writeCtx(t, ctx, "core/src/Core.java", "class Core { int x; }\n")
	out := e.build("-t", "mvn", ctx).out
	if st := stateOf(t, out, "go-offline"); st != "CACHED" {
		t.Fatalf("resolve step %s after a source edit, want CACHED\n%s", st, out)
	}
	if st := stateOf(t, out, "mvn -B package"); st != "MISS" {
		t.Fatalf("package step %s after a source edit, want MISS", st)
	}
	writeCtx(t, ctx, "app/pom.xml", "<project><dependencies/></project>\n")
	if st := stateOf(t, e.build("-t", "mvn", ctx).out, "go-offline"); st != "MISS" {
		t.Fatalf("resolve step %s after a module POM edit, want MISS", st)
	}
}

func writeCtx(t *testing.T, ctx, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(ctx, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
