package dockerfile

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/graph"
)

type fakeResolver struct {
	images    map[string]dockerspec.DockerOCIImage
	calls     []string
	platforms []string // platform of each call
}

func (f *fakeResolver) ResolveImageConfig(_ context.Context, ref string, p ocispec.Platform) (string, dockerspec.DockerOCIImage, error) {
	f.calls = append(f.calls, ref)
	f.platforms = append(f.platforms, p.OS+"/"+p.Architecture+"/"+p.Variant)
	img, ok := f.images[ref]
	if !ok {
		return "", img, fmt.Errorf("pull access denied for %s", ref)
	}
	return "sha256:" + strings.Repeat("a", 64), img, nil
}

func newResolver() *fakeResolver {
	alpine := dockerspec.DockerOCIImage{}
	alpine.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	alpine.Config.Cmd = []string{"/bin/sh"}
	node := dockerspec.DockerOCIImage{}
	node.Config.Env = []string{"PATH=/usr/bin:/bin", "NODE_VERSION=20.1.0"}
	node.Config.WorkingDir = "/srv"
	node.Config.User = "node"
	node.Config.Entrypoint = []string{"docker-entrypoint.sh"}
	node.Config.Cmd = []string{"node"}
	ob := dockerspec.DockerOCIImage{}
	ob.Config.OnBuild = []string{"COPY . /app/src", "RUN make -C /app/src"}
	return &fakeResolver{images: map[string]dockerspec.DockerOCIImage{
		"alpine":            alpine,
		"alpine:3.19":       alpine,
		"node:20":           node,
		"onbuild-base":      ob,
		"busybox":           alpine,
		"oci-layout:///l:t": alpine,
	}}
}

func parse(t *testing.T, df string, mod ...func(*Options)) *graph.Build {
	t.Helper()
	b, err := parseErr(df, mod...)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return b
}

func parseErr(df string, mod ...func(*Options)) (*graph.Build, error) {
	opts := Options{Dockerfile: []byte(df), Filename: "Dockerfile", Resolver: newResolver()}
	for _, m := range mod {
		m(&opts)
	}
	return Parse(context.Background(), opts)
}

func wantErr(t *testing.T, df string, line int, substr string, mod ...func(*Options)) {
	t.Helper()
	_, err := parseErr(df, mod...)
	if err == nil {
		t.Fatalf("expected error containing %q", substr)
	}
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is %T, not *Error", err, err)
	}
	if fe.Line != line || !strings.Contains(fe.Msg, substr) {
		t.Fatalf("got %q (line %d), want line %d containing %q", err, fe.Line, line, substr)
	}
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestMultiStageTargetPruning(t *testing.T) {
	df := `FROM alpine AS deps
RUN echo deps
FROM alpine AS unused
RUN echo unused
FROM deps AS build
COPY --from=tools /x /x
FROM busybox AS tools
FROM alpine
COPY --from=build /out /out
COPY --from=0 /a /a
`
	// build copies from a later stage: BuildKit rejects that.
	wantErr(t, df, 6, `cannot copy from stage "tools", it needs to be defined before current stage "build"`)

	df = `FROM alpine AS deps
RUN echo deps
FROM alpine AS unused
RUN echo unused
FROM busybox AS tools
FROM deps AS build
COPY --from=TOOLS /x /x
FROM alpine
COPY --from=build /out /out
COPY --from=0 /a /a
`
	b := parse(t, df)
	var names []string
	for _, s := range b.Stages {
		names = append(names, s.DisplayName())
	}
	if got := strings.Join(names, ","); got != "deps,tools,build,stage-4" {
		t.Fatalf("stages = %s", got)
	}
	if b.Target != b.Stages[3] {
		t.Fatal("target is not the last stage")
	}
	build := b.Stages[2]
	if build.Base.Stage != b.Stages[0] || len(build.Deps) != 2 || build.Deps[1] != b.Stages[1] {
		t.Fatalf("build deps wrong: %+v", build.Deps)
	}
	last := b.Target
	if last.Steps[0].Copy.From.Stage != build || last.Steps[1].Copy.From.Stage != b.Stages[0] {
		t.Fatal("COPY --from not resolved to stages")
	}

	b = parse(t, df, func(o *Options) { o.Target = "Build" })
	if len(b.Stages) != 3 || b.Target.Name != "build" {
		t.Fatalf("target build: %d stages, target %s", len(b.Stages), b.Target.Name)
	}
	if b.Stages[0].Base.Digest == "" || b.Stages[0].Base.Image != "alpine" {
		t.Fatalf("base not resolved: %+v", b.Stages[0].Base)
	}
	wantErr(t, df, 0, `target stage "nope" could not be found; available stages: deps, unused, tools, build`, func(o *Options) { o.Target = "nope" })
}

func TestArgScoping(t *testing.T) {
	df := `ARG BASE=alpine
ARG GLOBAL=g
FROM ${BASE}:3.19
ARG GLOBAL
ARG LOCAL=l-${GLOBAL}
ARG OVER=default
ENV A=$GLOBAL B=$LOCAL C=$OVER D=$UNDECLARED E=${TARGETARCH}
RUN echo $GLOBAL
FROM alpine AS second
ENV G=x$GLOBAL
`
	b := parse(t, df, func(o *Options) {
		o.BuildArgs = map[string]string{"OVER": "cli", "UNDECLARED": "nope"}
		o.Target = ""
	})
	s0 := b.Stages
	if len(s0) != 1 || b.Target.Name != "second" {
		t.Fatalf("expected only 'second', got %d stages", len(s0))
	}
	if got := envMap(b.Target.Config.Env)["G"]; got != "x" {
		t.Fatalf("global ARG leaked into stage without re-declaring: G=%q", got)
	}

	df = strings.Replace(df, "FROM alpine AS second\nENV G=x$GLOBAL\n", "", 1)
	r := newResolver()
	b = parse(t, df, func(o *Options) {
		o.BuildArgs = map[string]string{"OVER": "cli", "UNDECLARED": "nope"}
		o.Resolver = r
	})
	if r.calls[0] != "alpine:3.19" {
		t.Fatalf("FROM expanded to %v", r.calls)
	}
	st := b.Target
	env := envMap(st.Config.Env)
	want := map[string]string{"A": "g", "B": "l-g", "C": "cli", "D": "", "E": ""}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	run := st.Steps[len(st.Steps)-1]
	renv := envMap(run.Run.Env)
	if renv["GLOBAL"] != "g" || renv["LOCAL"] != "l-g" || renv["OVER"] != "cli" {
		t.Fatalf("RUN env lacks args: %v", run.Run.Env)
	}
	if _, ok := renv["UNDECLARED"]; ok {
		t.Fatal("undeclared build arg in RUN env")
	}
	if run.CreatedBy != "RUN |3 GLOBAL=g LOCAL=l-g OVER=cli /bin/sh -c echo $GLOBAL # buildkit" {
		t.Fatalf("CreatedBy = %q", run.CreatedBy)
	}
	if args := run.Run.Args; !reflect.DeepEqual(args, []string{"/bin/sh", "-c", "echo $GLOBAL"}) {
		t.Fatalf("args = %q", args)
	}
	if st.Steps[0].CreatedBy != "ARG GLOBAL=g" || st.Steps[1].CreatedBy != "ARG LOCAL=l-g" {
		t.Fatalf("ARG history: %q %q", st.Steps[0].CreatedBy, st.Steps[1].CreatedBy)
	}
}

func TestPredefinedAndProxyArgs(t *testing.T) {
	df := `FROM --platform=$BUILDPLATFORM alpine
ARG TARGETARCH
ARG TARGETPLATFORM
RUN echo $TARGETARCH
`
	b := parse(t, df, func(o *Options) {
		o.BuildArgs = map[string]string{"HTTP_PROXY": "http://p:3128", "no_proxy": "internal", "ftp_proxy": ""}
	})
	run := b.Target.Steps[2].Run
	env := envMap(run.Env)
	if env["TARGETARCH"] != "amd64" || env["TARGETPLATFORM"] != "linux/amd64" {
		t.Fatalf("env %v", run.Env)
	}
	// BuildKit sets both spellings of each non-empty proxy arg, however it was spelled.
	wantProxy := []string{"HTTP_PROXY=http://p:3128", "http_proxy=http://p:3128", "NO_PROXY=internal", "no_proxy=internal"}
	if _, ok := env["HTTP_PROXY"]; ok || !reflect.DeepEqual(run.ProxyEnv, wantProxy) {
		t.Fatalf("proxy: env %v proxy %v", run.Env, run.ProxyEnv)
	}
	if strings.Contains(b.Target.Steps[2].CreatedBy, "PROXY") {
		t.Fatal("proxy in history")
	}
}

// For --platform linux/arm/v7 on an amd64 host, BUILD* name the host and TARGET* the target; a
// FROM --platform=$BUILDPLATFORM stage is built (and its base resolved) for the host, the others
// for the target, and a stage FROM another stage inherits that stage's platform, as in
// dockerfile2llb.
func TestPlatformArgsAndStagePlatforms(t *testing.T) {
	df := `FROM --platform=$BUILDPLATFORM alpine AS build
ARG TARGETARCH TARGETVARIANT TARGETPLATFORM BUILDARCH BUILDPLATFORM
RUN echo $TARGETARCH $TARGETVARIANT $TARGETPLATFORM $BUILDARCH $BUILDPLATFORM
FROM build AS more
RUN true
FROM alpine
COPY --from=more /out /out
`
	r := newResolver()
	b, err := Parse(context.Background(), Options{Dockerfile: []byte(df), Resolver: r,
		Platform: ocispec.Platform{OS: "linux", Architecture: "arm"}, BuildPlatform: ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	env := envMap(b.Stages[0].Steps[len(b.Stages[0].Steps)-1].Run.Env)
	want := map[string]string{"TARGETARCH": "arm", "TARGETVARIANT": "v7", "TARGETPLATFORM": "linux/arm/v7", "BUILDARCH": "amd64", "BUILDPLATFORM": "linux/amd64"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q (env %v)", k, env[k], v, b.Stages[0].Steps[len(b.Stages[0].Steps)-1].Run.Env)
		}
	}
	got := []string{}
	for _, st := range b.Stages {
		got = append(got, st.DisplayName()+"="+st.Platform.Architecture+st.Platform.Variant)
	}
	if !reflect.DeepEqual(got, []string{"build=amd64", "more=amd64", "stage-2=armv7"}) {
		t.Errorf("stage platforms %v", got)
	}
	if b.Platform.Architecture != "arm" || b.Platform.Variant != "v7" {
		t.Errorf("build platform %+v", b.Platform)
	}
	if !reflect.DeepEqual(r.platforms, []string{"linux/amd64/", "linux/arm/v7"}) {
		t.Errorf("bases resolved for %v", r.platforms)
	}
}

func TestEnvFromBaseAndWorkdir(t *testing.T) {
	df := `FROM node:20
ENV APP=/app PATH=$PATH:/opt
WORKDIR app
WORKDIR ${APP}/sub
WORKDIR ../x
USER root
RUN pwd
`
	b := parse(t, df)
	st := b.Target
	if st.Total != 5 {
		t.Fatalf("Total = %d", st.Total)
	}
	env := envMap(st.Config.Env)
	if env["NODE_VERSION"] != "20.1.0" || env["PATH"] != "/usr/bin:/bin:/opt" {
		t.Fatalf("env %v", st.Config.Env)
	}
	var wds []string
	for _, s := range st.Steps {
		if s.Kind == graph.KindWorkdir {
			wds = append(wds, s.Workdir)
		}
	}
	if strings.Join(wds, " ") != "/srv/app /app/sub /app/x" {
		t.Fatalf("workdirs %v", wds)
	}
	// Steps record the state they run in; the base's USER applies until USER changes it.
	if st.Steps[1].User != "node" || st.Steps[1].Dir != "/srv" {
		t.Fatalf("first WORKDIR ran as %q in %q", st.Steps[1].User, st.Steps[1].Dir)
	}
	run := st.Steps[5]
	if run.Run.Cwd != "/app/x" || run.Run.User != "root" || run.Pos != 5 || run.Text != "RUN pwd" {
		t.Fatalf("run: %+v pos %d text %q", run.Run, run.Pos, run.Text)
	}
	if st.Config.WorkingDir != "/app/x" || !reflect.DeepEqual(st.Config.Entrypoint, []string{"docker-entrypoint.sh"}) {
		t.Fatalf("config %+v", st.Config)
	}
	if st.Steps[2].CreatedBy != "WORKDIR /app/sub" || st.Steps[0].CreatedBy != "ENV APP=/app PATH=/usr/bin:/bin:/opt" {
		t.Fatalf("history %q / %q", st.Steps[2].CreatedBy, st.Steps[0].CreatedBy)
	}
}

func TestShellExecAndShellInstruction(t *testing.T) {
	df := `FROM alpine
RUN echo "a  b" && true
RUN ["echo", "$HOME"]
SHELL ["/bin/bash", "-eo", "pipefail", "-c"]
RUN echo hi | cat
CMD echo cmd
ENTRYPOINT ["/entry"]
`
	b := parse(t, df)
	st := b.Target.Steps
	if !reflect.DeepEqual(st[0].Run.Args, []string{"/bin/sh", "-c", `echo "a  b" && true`}) {
		t.Fatalf("shell form %q", st[0].Run.Args)
	}
	if !reflect.DeepEqual(st[1].Run.Args, []string{"echo", "$HOME"}) {
		t.Fatalf("exec form %q", st[1].Run.Args)
	}
	if !reflect.DeepEqual(st[3].Run.Args, []string{"/bin/bash", "-eo", "pipefail", "-c", "echo hi | cat"}) {
		t.Fatalf("SHELL %q", st[3].Run.Args)
	}
	cfg := b.Target.Config
	// CMD was set in this stage, so ENTRYPOINT keeps it.
	if !reflect.DeepEqual(cfg.Cmd, []string{"/bin/bash", "-eo", "pipefail", "-c", "echo cmd"}) || !reflect.DeepEqual(cfg.Entrypoint, []string{"/entry"}) {
		t.Fatalf("cmd %q entrypoint %q", cfg.Cmd, cfg.Entrypoint)
	}
	if st[5].CreatedBy != `ENTRYPOINT ["/entry"]` {
		t.Fatalf("%q", st[5].CreatedBy)
	}

	b = parse(t, "FROM alpine\nENTRYPOINT [\"/e\"]\n")
	if b.Target.Config.Cmd != nil {
		t.Fatalf("inherited CMD not reset by ENTRYPOINT: %q", b.Target.Config.Cmd)
	}
}

func TestCanonicalChown(t *testing.T) {
	for in, want := range map[string]string{
		"123": "123:123", "app": "app", "app:": "app:0", ":app": "0:app", ":": "0:0",
		"app:grp": "app:grp", "1:2": "1:2", "": "",
	} {
		if got := canonicalChown(in); got != want {
			t.Errorf("canonicalChown(%q) = %q, want %q", in, got, want)
		}
	}
}

// BuildKit keeps an absolute WORKDIR as written (it is what the image config shows) and cleans
// only a relative one, which it joins onto the current directory.
func TestWorkdirKeptAsWritten(t *testing.T) {
	b := parse(t, "FROM alpine\nWORKDIR /etc/\nWORKDIR /a/../b\nWORKDIR c/\nARG E\nWORKDIR $E\n")
	var wds []string
	for _, s := range b.Target.Steps {
		if s.Kind == graph.KindWorkdir {
			wds = append(wds, s.Workdir)
		}
	}
	// A WORKDIR that expands to nothing stays where it is.
	if strings.Join(wds, " ") != "/etc/ /a/../b /b/c /b/c" || b.Target.Config.WorkingDir != "/b/c" {
		t.Fatalf("workdirs %v, config %q", wds, b.Target.Config.WorkingDir)
	}
}

// --from and --target find stages case-insensitively, FROM only by the exact (lowercased) name:
// "FROM Build" is an image reference, as in BuildKit.
func TestFromMatchesStageNameExactly(t *testing.T) {
	b := parse(t, "FROM alpine AS Build\nFROM build\nCOPY --from=BUILD /a /a\n")
	if b.Target.Base.Stage == nil {
		t.Fatal("FROM build did not use the stage")
	}
	r := newResolver()
	_, err := parseErr("FROM alpine AS Build\nFROM Build\nRUN true\n", func(o *Options) { o.Resolver = r })
	if err == nil || !strings.Contains(err.Error(), "Dockerfile:2") || !slices.Contains(r.calls, "Build") {
		t.Fatalf("FROM Build: err %v, resolved %v", err, r.calls)
	}
}

// With check=error=true (directive or BUILDKIT_DOCKERFILE_CHECK) a lint violation fails the build,
// as in BuildKit; without it, or with the rule skipped, the same file builds.
func TestCheckErrorDirective(t *testing.T) {
	df := "FROM alpine as base\nCMD echo hi\n"
	if _, err := parseErr(df); err != nil {
		t.Fatalf("no directive: %v", err)
	}
	if _, err := parseErr("# check=error=true\n" + df); err == nil || !strings.Contains(err.Error(), "FromAsCasing") || !strings.Contains(err.Error(), "JSONArgsRecommended") {
		t.Fatalf("error=true: %v", err)
	}
	if _, err := parseErr("# check=error=true;skip=FromAsCasing,JSONArgsRecommended\n" + df); err != nil {
		t.Fatalf("skipped rules: %v", err)
	}
	_, err := parseErr(df, func(o *Options) { o.BuildArgs = map[string]string{"BUILDKIT_DOCKERFILE_CHECK": "error=true"} })
	if err == nil {
		t.Fatal("BUILDKIT_DOCKERFILE_CHECK=error=true did not fail")
	}
}
