package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// runSplit runs strata with stdout and stderr apart.
func (e *env) runSplit(args ...string) (stdout, stderr string, err error) {
	e.t.Helper()
	cmd := exec.Command(strataBin, append([]string{"--root", e.root}, args...)...)
	var o, s strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &s
	err = cmd.Run()
	return o.String(), s.String(), err
}

// TestFlagQuiet: -q prints nothing but the image ID (the config digest, as buildx) on stdout,
// and no progress on stderr.
func TestFlagQuiet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("quiet", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo hi > /hi\n"})
	md := filepath.Join(e.dir, "md.json")
	stdout, stderr, err := e.runSplit("build", "-q", "--metadata-file", md, ctx)
	if err != nil {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(readFile(t, md)), &m); err != nil {
		t.Fatal(err)
	}
	if want := m["containerimage.config.digest"].(string) + "\n"; stdout != want {
		t.Errorf("stdout %q, want the config digest %q", stdout, want)
	}
	if strings.Contains(stderr, "#") || strings.Contains(stderr, "RUN") {
		t.Errorf("-q printed progress:\n%s", stderr)
	}
}

// TestFlagLoadWithoutDaemon: with no Docker or Podman daemon (this machine has none), --load says
// so in one line and the image is in strata's store.
func TestFlagLoadWithoutDaemon(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("load", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo hi > /hi\n"})
	r := e.runIn("", []string{"DOCKER_HOST=unix://" + filepath.Join(e.dir, "no-docker.sock"), "PATH=/usr/bin:/bin:/usr/sbin:/sbin"},
		"build", "--progress=plain", "--load", "-t", "strata-test/load:v1", ctx)
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.out)
	}
	if _, err := exec.LookPath("docker"); err == nil {
		t.Skip("a docker CLI is installed; the fallback is covered by internal/daemonload's tests")
	}
	if n := strings.Count(r.out, "--load: no Docker or Podman daemon is reachable"); n != 1 {
		t.Errorf("fallback note printed %d times\n%s", n, r.out)
	}
	if imgs := e.run("images"); !strings.Contains(imgs.out, "strata-test/load") {
		t.Errorf("image not in the store:\n%s", imgs.out)
	}
}

// TestFlagCall: --call targets and outline answer from the Dockerfile, in BuildKit's text, and
// run nothing.
func TestFlagCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("call", map[string]string{"Dockerfile": `ARG BASE={{BASE}}
ARG UNUSED=x

# base has the tools
FROM ${BASE} AS base
# PREFIX is where things go
ARG PREFIX=/usr
RUN --mount=type=secret,id=npmrc,required=true false

FROM base AS build
ARG VERSION
RUN --mount=type=secret,id=aws --mount=type=ssh false

# release is the shipped image
FROM scratch AS release
COPY --from=build /x /x

FROM ${BASE}
ARG OTHER=1
`})
	stdout, stderr, err := e.runSplit("build", "--call", "targets", ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	want := "TARGET    DESCRIPTION\nbase      has the tools\nbuild     \nrelease   is the shipped image\n(default) \n"
	if stdout != want {
		t.Errorf("targets:\n%s\nwant:\n%s", stdout, want)
	}
	stdout, stderr, err = e.runSplit("build", "--call=outline", "--target", "release", "--build-arg", "VERSION=2", ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, re := range []string{
		`(?m)^TARGET:\s+release$`, `(?m)^DESCRIPTION:\s+is the shipped image$`,
		`(?m)^BASE\s+` + regexp.QuoteMeta(baseRef) + `\s*$`, `(?m)^PREFIX\s+/usr\s+is where things go$`, `(?m)^VERSION\s+2\s*$`,
		`(?m)^npmrc\s+true$`, `(?m)^aws\s*$`, `(?m)^SSH\s+REQUIRED\n^default\s*$`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("outline lacks %s:\n%s", re, stdout)
		}
	}
	if strings.Contains(stdout, "UNUSED") || strings.Contains(stdout, "OTHER") {
		t.Errorf("outline names args the target does not use:\n%s", stdout)
	}
	if _, err := os.Stat(filepath.Join(e.root, "history")); err == nil {
		if entries, _ := os.ReadDir(filepath.Join(e.root, "history")); len(entries) > 0 {
			t.Errorf("--call recorded a build")
		}
	}
	if _, stderr, err := e.runSplit("build", "--call", "lint", ctx); err == nil || !strings.Contains(stderr, "use build, targets, outline or check") {
		t.Errorf("--call lint: %v %s", err, stderr)
	}
}

// TestFlagSyntaxDirective: the Dockerfile frontend's names (any tag, digest, labs, upstream,
// docker.io) are accepted; another frontend is an error naming line 1; BUILDKIT_SYNTAX is checked
// the same way.
func TestFlagSyntaxDirective(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i, d := range []string{"docker/dockerfile:1", "docker/dockerfile:1.7-labs", "docker.io/docker/dockerfile:1.4@sha256:9ba7531bd80fb0a858632727cf7a112fbfd19b17e94c4e84ced81e24ef1a0dbc", "docker/dockerfile-upstream:master"} {
		ctx := e.project("syntax-ok-"+string(rune('a'+i)), map[string]string{"Dockerfile": "# syntax=" + d + "\nFROM {{BASE}}\nRUN true\n"})
		e.build(ctx)
	}
	ctx := e.project("syntax-other", map[string]string{"Dockerfile": "# syntax=tonistiigi/hcl\nFROM {{BASE}}\nRUN true\n"})
	r := e.buildFail(ctx)
	if !r.has("Dockerfile:1:") || !r.has("strata runs only the Dockerfile frontend") {
		t.Errorf("foreign frontend error:\n%s", r.out)
	}
	r = e.buildFail("--build-arg", "BUILDKIT_SYNTAX=example.com/frontend:1", e.project("syntax-arg", map[string]string{"Dockerfile": "FROM {{BASE}}\n"}))
	if !r.has("BUILDKIT_SYNTAX") {
		t.Errorf("BUILDKIT_SYNTAX error:\n%s", r.out)
	}
}

// TestFlagBuildArgFromEnv: --build-arg KEY takes KEY's value from the environment, and an unset
// KEY is skipped, as buildx does (the ARG keeps its default).
func TestFlagBuildArgFromEnv(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("argenv", map[string]string{"Dockerfile": "FROM {{BASE}}\nARG FROMENV\nARG UNSETARG=dflt\nRUN echo \"$FROMENV $UNSETARG\" > /v\n"})
	tarPath := filepath.Join(e.dir, "argenv.oci.tar")
	r := e.runIn("", []string{"FROMENV=from-the-env"}, "build", "--progress=plain", "-t", "strata-test/argenv:v1", "-o", "type=oci,dest="+tarPath,
		"--build-arg", "FROMENV", "--build-arg", "STRATA_SURELY_UNSET_ARG", "--build-arg", "UNSETARG", ctx)
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.out)
	}
	if os.Getenv("UNSETARG") != "" {
		t.Skip("UNSETARG is set in this environment")
	}
	if got := fileAt(t, readOCI(t, tarPath, filepath.Join(e.dir, "argenv.oci"), "v1").unpack(t), "v"); got != "from-the-env dflt\n" {
		t.Errorf("RUN saw %q", got)
	}
}

// TestFlagLoadIntoDaemon: with a daemon answering on $DOCKER_HOST (a fake speaking the Docker
// API's /_ping and /images/load), --load sends it a `docker load` archive of the image, named
// by -t, and the image is in strata's store as well.
func TestFlagLoadIntoDaemon(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sock := filepath.Join(e.dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var loaded []byte
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_ping":
			w.Write([]byte("OK"))
		case "/images/load":
			data, _ := io.ReadAll(r.Body)
			mu.Lock()
			loaded = data
			mu.Unlock()
			w.Write([]byte(`{"stream":"Loaded image: strata-test/loaded:v1\n"}`))
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	ctx := e.project("loaddaemon", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo hi > /hi\n"})
	r := e.runIn("", []string{"DOCKER_HOST=unix://" + sock}, "build", "--progress=plain", "--load", "-t", "strata-test/loaded:v1", ctx)
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.out)
	}
	if !r.has("loading image into the daemon at " + sock) {
		t.Errorf("no load step in the progress:\n%s", r.out)
	}
	mu.Lock()
	defer mu.Unlock()
	var manifest []struct{ RepoTags []string }
	tr := tar.NewReader(bytes.NewReader(loaded))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "manifest.json" {
			json.NewDecoder(tr).Decode(&manifest)
		}
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != "strata-test/loaded:v1" {
		t.Errorf("the daemon got no docker archive of strata-test/loaded:v1 (%d bytes, manifest.json %+v)", len(loaded), manifest)
	}
	if imgs := e.run("images"); !strings.Contains(imgs.out, "strata-test/loaded") {
		t.Errorf("image not in the store:\n%s", imgs.out)
	}
}

// TestFlagCallCheck: --call check reports strata check's findings and exits 1 on one, as buildx's
// --call check does for its lint findings, without building.
func TestFlagCallCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("callcheck", map[string]string{"Dockerfile": naiveNode, "npm": npmScript,
		"package.json": `{"name":"app"}` + "\n", "package-lock.json": "{}\n", "app.js": "v1\n"})
	r := e.run("build", "--call=check", ctx)
	if r.code != 1 || !r.has("STR001") {
		t.Fatalf("--call check: exit %d, want 1 with STR001\n%s", r.code, r.out)
	}
	if r.has("RUN npm ci\n#") || r.has("DONE") {
		t.Errorf("--call check built:\n%s", r.out)
	}
	clean := e.project("callcheck-clean", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN true\n"})
	if r := e.run("build", "--call", "check", clean); r.code != 0 {
		t.Errorf("clean Dockerfile: exit %d\n%s", r.code, r.out)
	}
}
