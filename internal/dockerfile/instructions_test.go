package dockerfile

import (
	"reflect"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/graph"
)

func TestHeredocs(t *testing.T) {
	df := `FROM alpine
RUN <<EOF
echo one
echo two
EOF
RUN <<EOF
#!/usr/bin/env python3
print("hi")
EOF
RUN cat <<A > /a
hello
A
COPY <<one.txt <<two.txt /dst/
first $X
one.txt
second
two.txt
ARG X=ex
COPY <<'raw.txt' /raw
$X
raw.txt
`
	b := parse(t, df)
	st := b.Target.Steps
	if !reflect.DeepEqual(st[0].Run.Args, []string{"/bin/sh", "-c", "echo one\necho two\n"}) || len(st[0].Run.Files) != 0 {
		t.Fatalf("plain heredoc: %q", st[0].Run.Args)
	}
	if st[0].Text != "RUN <<EOF (echo one...)" {
		t.Fatalf("text %q", st[0].Text)
	}
	r := st[1].Run
	if !reflect.DeepEqual(r.Args, []string{"/bin/sh", "-c", "/dev/pipes/EOF"}) || len(r.Files) != 1 || r.Files[0].Name != "/dev/pipes/EOF" || r.Files[0].Mode != 0o755 || !strings.HasPrefix(r.Files[0].Data, "#!/usr/bin/env python3\n") {
		t.Fatalf("shebang heredoc: %q %+v", r.Args, r.Files)
	}
	if !reflect.DeepEqual(st[2].Run.Args, []string{"/bin/sh", "-c", "cat <<A > /a\nhello\nA"}) {
		t.Fatalf("inline heredoc %q", st[2].Run.Args)
	}
	cp := st[3].Copy
	if len(cp.Files) != 2 || cp.Files[0].Name != "one.txt" || cp.Files[0].Data != "first \n" || cp.Files[1].Data != "second\n" || cp.Dest != "/dst/" {
		t.Fatalf("copy heredoc %+v", cp)
	}
	if st[3].CreatedBy != "COPY <<one.txt <<two.txt /dst/ # buildkit" {
		t.Fatalf("%q", st[3].CreatedBy)
	}
	if st[5].Copy.Files[0].Data != "$X\n" {
		t.Fatalf("quoted heredoc expanded: %q", st[5].Copy.Files[0].Data)
	}
}

func TestCopyAdd(t *testing.T) {
	df := `FROM alpine
ENV D=/opt
COPY --chown=1:1 --chmod=0755 --link --exclude=*.md a b $D/
COPY --parents ./src/./x/ rel
ADD --checksum=sha256:abc https://example.com/f.tgz /f
ADD app.tar.gz /
COPY --from=busybox /bin/sh /sh
`
	b := parse(t, df)
	st := b.Target.Steps
	c := st[1].Copy
	if c.Dest != "/opt/" || c.Chown != "1:1" || c.Chmod != "0755" || !c.Link || !reflect.DeepEqual(c.Excludes, []string{"*.md"}) || !reflect.DeepEqual(c.Srcs, []string{"a", "b"}) || !c.From.IsContext() {
		t.Fatalf("copy %+v", c)
	}
	if st[1].CreatedBy != "COPY --chown=1:1 --chmod=0755 a b /opt/ # buildkit" || st[1].Text != "COPY --chown=1:1 --chmod=0755 --link --exclude=*.md a b $D/" {
		t.Fatalf("created %q text %q", st[1].CreatedBy, st[1].Text)
	}
	if c := st[2].Copy; !c.Parents || c.Dest != "rel" {
		t.Fatalf("parents %+v", c)
	}
	if c := st[3].Copy; !reflect.DeepEqual(c.URLs, []string{"https://example.com/f.tgz"}) || c.Unpack || c.Checksum != "sha256:abc" || st[3].Kind != graph.KindAdd {
		t.Fatalf("add url %+v", c)
	}
	if c := st[4].Copy; !c.Unpack || !reflect.DeepEqual(c.Srcs, []string{"app.tar.gz"}) {
		t.Fatalf("add local %+v", c)
	}
	if f := st[5].Copy.From; f.Image != "busybox" || f.Digest == "" {
		t.Fatalf("copy from image %+v", f)
	}

	b = parse(t, "FROM alpine\nCOPY --from=ctx / /\n", func(o *Options) { o.NamedContexts = map[string]string{"ctx": "/some/dir"} })
	if f := b.Target.Steps[0].Copy.From; f.Context != "ctx" {
		t.Fatalf("named context source %+v", f)
	}
}

func TestRunMounts(t *testing.T) {
	df := `FROM alpine AS tools
FROM alpine
ARG CID=gomod
WORKDIR /src
RUN --mount=type=cache,id=$CID,target=/root/go,sharing=locked \
    --mount=type=bind,from=tools,source=/usr/bin,target=bin \
    --mount=type=secret,id=npmrc \
    --mount=type=secret,id=tok,env=TOKEN \
    --mount=type=ssh \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --mount=type=cache,target=/var/cache/apt,mode=0700,uid=10 \
    --network=none --security=insecure make
`
	b := parse(t, df)
	run := b.Target.Steps[2].Run
	m := run.Mounts
	if len(m) != 7 {
		t.Fatalf("%d mounts", len(m))
	}
	if m[0].Type != "cache" || m[0].ID != "gomod" || m[0].Target != "/root/go" || m[0].Sharing != "locked" || m[0].ReadOnly {
		t.Fatalf("cache %+v", m[0])
	}
	if m[1].Type != "bind" || m[1].From == nil || m[1].From.Stage != b.Stages[0] || m[1].Target != "/src/bin" || m[1].Source != "/usr/bin" || !m[1].ReadOnly {
		t.Fatalf("bind %+v", m[1])
	}
	if m[2].ID != "npmrc" || m[2].Target != "/run/secrets/npmrc" || m[3].Env != "TOKEN" || m[3].Target != "" {
		t.Fatalf("secrets %+v %+v", m[2], m[3])
	}
	if m[4].Type != "ssh" || m[4].ID != "default" {
		t.Fatalf("ssh %+v", m[4])
	}
	if m[5].Size != 64<<20 || m[5].Type != "tmpfs" {
		t.Fatalf("tmpfs %+v", m[5])
	}
	if m[6].ID != "/var/cache/apt" || *m[6].Mode != 0o700 || *m[6].UID != 10 || m[6].Sharing != "shared" {
		t.Fatalf("cache2 %+v", m[6])
	}
	if run.Network != "none" || run.Security != "insecure" {
		t.Fatalf("network %q security %q", run.Network, run.Security)
	}
	if len(b.Stages) != 2 || len(b.Target.Deps) != 1 {
		t.Fatal("mount from= did not make a dependency")
	}
}

// BuildKit's LLB numbers a RUN's ssh sockets /run/buildkit/ssh_agent.N in mount order (an
// explicit target takes no number of its own but still counts) and points SSH_AUTH_SOCK at the
// first one unless the env (ENV or a build arg) already sets it. ssh mounts are optional unless
// required is given.
func TestRunSSHMounts(t *testing.T) {
	b := parse(t, "FROM alpine\n"+
		"RUN --mount=type=ssh,id=gh,target=/gh.sock,required --mount=type=ssh --mount=type=tmpfs,target=/t --mount=type=ssh,id=x,required=false true\n"+
		"RUN --mount=type=ssh true\n"+
		"RUN true\n"+
		"ENV SSH_AUTH_SOCK=/mine\n"+
		"RUN --mount=type=ssh true\n")
	st := b.Target.Steps
	m := st[0].Run.Mounts
	type got struct {
		id, target string
		required   bool
	}
	want := []got{{"gh", "/gh.sock", true}, {"default", "/run/buildkit/ssh_agent.1", false}, {"", "/t", false}, {"x", "/run/buildkit/ssh_agent.2", false}}
	for i, w := range want {
		if g := (got{m[i].ID, m[i].Target, m[i].Required}); g != w {
			t.Errorf("mount %d = %+v, want %+v", i, g, w)
		}
	}
	env := func(i int) []string {
		var out []string
		for _, kv := range st[i].Run.Env {
			if strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
				out = append(out, kv)
			}
		}
		return out
	}
	for i, w := range map[int][]string{0: {"SSH_AUTH_SOCK=/gh.sock"}, 1: {"SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0"}, 2: nil, 4: {"SSH_AUTH_SOCK=/mine"}} {
		if g := env(i); !reflect.DeepEqual(g, w) {
			t.Errorf("step %d env %v, want %v", i, g, w)
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name, df string
		line     int
		msg      string
	}{
		{"unknown instruction", "FROM alpine\nRUN true\nFOO bar\n", 3, "unknown instruction: FOO"},
		{"unknown flag", "FROM alpine\nCOPY --nope=1 a b\n", 2, "unknown flag: --nope"},
		{"missing stage", "FROM alpine\nCOPY --from=nope /a /b\n", 2, `COPY --from=nope: stage "nope" not found`},
		{"bad index", "FROM alpine\nCOPY --from=3 /a /b\n", 2, "invalid stage index 3"},
		{"cycle", "FROM alpine AS a\nCOPY --from=b /x /x\nFROM a AS b\n", 2, "circular dependency detected on stage: a"},
		{"self", "FROM alpine AS a\nCOPY --from=a /x /x\n", 2, "circular dependency"},
		{"bad platform", "FROM --platform=windows/amd64 alpine\n", 1, "only linux platforms can be built"},
		{"bad image", "FROM nosuch\n", 1, "nosuch: pull access denied"},
		{"from var", "FROM alpine\nARG S=x\nCOPY --from=$S /a /b\n", 3, "variable expansion is not supported for --from"},
		{"bad mount", "FROM alpine\nRUN --mount=type=nope true\n", 2, "unsupported mount type"},
		{"copy url", "FROM alpine\nCOPY https://x/y /y\n", 2, "source can't be a URL for COPY"},
		{"stopsignal", "FROM alpine\nSTOPSIGNAL SIGFOO\n", 2, "invalid signal"},
		{"no stages", "ARG X=1\n", 0, "no stages"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantErr(t, c.df, c.line, c.msg) })
	}
	_, err := parseErr("FROM alpine\n\nCOPY https://x/y /y\n")
	if got := err.Error(); got != "Dockerfile:3: COPY: source can't be a URL for COPY" {
		t.Fatalf("Error() = %q", got)
	}
}

func TestOnbuildTriggers(t *testing.T) {
	df := "# comment\nFROM onbuild-base\nRUN echo after\n"
	b := parse(t, df)
	st := b.Target.Steps
	if len(st) != 3 || st[0].Text != "ONBUILD COPY . /app/src" || st[0].Line != 2 || st[1].Kind != graph.KindRun || st[1].Line != 2 {
		t.Fatalf("triggers: %+v", st)
	}
	if b.Target.Config.OnBuild != nil {
		t.Fatal("consumed triggers kept in config")
	}
	if st[0].Pos != 2 || st[2].Pos != 4 || b.Target.Total != 4 {
		t.Fatalf("positions %d %d total %d", st[0].Pos, st[2].Pos, b.Target.Total)
	}

	// ONBUILD in an earlier stage fires in the stage built FROM it, and only there.
	df = `FROM alpine AS base
ONBUILD RUN echo triggered
FROM base
RUN echo child
`
	b = parse(t, df)
	if cfg := b.Stages[0].Config; !reflect.DeepEqual(cfg.OnBuild, []string{"RUN echo triggered"}) {
		t.Fatalf("base OnBuild %q", cfg.OnBuild)
	}
	child := b.Target
	if len(child.Steps) != 2 || child.Steps[0].Text != "ONBUILD RUN echo triggered" || child.Config.OnBuild != nil {
		t.Fatalf("child steps %+v", child.Steps)
	}
}

func TestLabelsAndMeta(t *testing.T) {
	df := `FROM alpine AS a
LABEL stage=a
FROM alpine
ARG V=1
LABEL version=$V "two words"=x
EXPOSE 80 53/udp 8000-8001
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s CMD curl -f http://localhost/
MAINTAINER me
`
	b := parse(t, df, func(o *Options) { o.Labels = map[string]string{"org.opencontainers.image.source": "x"} })
	cfg := b.Target.Config
	want := map[string]string{"version": "1", "two words": "x", "org.opencontainers.image.source": "x"}
	if !reflect.DeepEqual(cfg.Labels, want) {
		t.Fatalf("labels %v", cfg.Labels)
	}
	if len(cfg.ExposedPorts) != 4 || cfg.StopSignal != "SIGTERM" || cfg.Healthcheck == nil || cfg.Healthcheck.Interval.Seconds() != 5 || b.Target.Author != "me" {
		t.Fatalf("config %+v", cfg)
	}
	if _, ok := cfg.Volumes["/data"]; !ok {
		t.Fatal("volume")
	}
	if got := b.Target.Steps[2].CreatedBy; got != "EXPOSE [53/udp 80/tcp 8000/tcp 8001/tcp]" {
		t.Fatalf("%q", got)
	}

	b = parse(t, df, func(o *Options) { o.Target = "a"; o.Labels = map[string]string{"l": "v"} })
	if !reflect.DeepEqual(b.Target.Config.Labels, map[string]string{"stage": "a", "l": "v"}) {
		t.Fatalf("target labels %v", b.Target.Config.Labels)
	}
}

func TestNamedContexts(t *testing.T) {
	df := `FROM alpine AS base
RUN echo never
FROM base
COPY --from=assets / /assets
`
	b := parse(t, df, func(o *Options) {
		o.NamedContexts = map[string]string{"base": "docker-image://busybox", "assets": "/tmp/assets"}
	})
	base := b.Stages[0]
	if base.Base.Image != "busybox" || len(base.Steps) != 0 {
		t.Fatalf("named context did not replace stage: %+v", base.Base)
	}
	if b.Target.Steps[0].Copy.From.Context != "assets" {
		t.Fatal("assets")
	}
	b = parse(t, "FROM alpine:latest\n", func(o *Options) { o.NamedContexts = map[string]string{"alpine": "oci-layout:///l:t"} })
	if b.Target.Base.Image != "oci-layout:///l:t" {
		t.Fatalf("%+v", b.Target.Base)
	}
	b = parse(t, "FROM scratch\nCOPY x /\n")
	if !b.Target.Base.Scratch || b.Target.Steps[0].Pos != 1 || b.Target.Total != 1 {
		t.Fatalf("scratch %+v", b.Target)
	}
}

func TestEscapeDirectiveAndStageInheritance(t *testing.T) {
	df := "# escape=`\nFROM alpine AS a\nARG A=1\nENV E=e\nRUN echo a `\n  b\nFROM a\nRUN echo $A\n"
	b := parse(t, df)
	if got := b.Stages[0].Steps[2].Run.Args[2]; got != "echo a   b" {
		t.Fatalf("escape: %q", got)
	}
	// BuildKit carries a stage's ARG values into stages built FROM it.
	if env := envMap(b.Target.Steps[0].Run.Env); env["A"] != "1" || env["E"] != "e" {
		t.Fatalf("inherited env %v", b.Target.Steps[0].Run.Env)
	}
}
