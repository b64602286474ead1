package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Tests of what goes into a build: ignore files, Dockerfile sources, build args, targets, labels,
// named contexts, ADD of archives and URLs, heredocs.

// listTree lists the regular files and symlinks under dir, relative, sorted.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func TestDockerignoreExceptions(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("ign", map[string]string{
		"Dockerfile":     "FROM scratch\nCOPY . /ctx/\n",
		".dockerignore":  "# comment\n*.md\n!README.md\nlogs\n!logs/keep.log\n**/*.tmp\nDockerfile\n.dockerignore\n",
		"README.md":      "readme\n",
		"CHANGES.md":     "changes\n",
		"logs/a.log":     "a\n",
		"logs/keep.log":  "keep\n",
		"src/main.go":    "package main\n",
		"src/x.tmp":      "tmp\n",
		"src/deep/y.tmp": "tmp\n",
		"src/deep/z.txt": "z\n",
	})
	out := filepath.Join(e.dir, "out")
	e.build("-o", "type=local,dest="+out, ctx)
	got := strings.Join(listTree(t, filepath.Join(out, "ctx")), " ")
	want := "README.md logs/keep.log src/deep/z.txt src/main.go"
	if got != want {
		t.Errorf("copied %q, want %q", got, want)
	}
}

func TestDockerfileSpecificIgnoreWins(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("spec", map[string]string{
		"Dockerfile":                        "FROM scratch\nCOPY . /default/\n",
		".dockerignore":                     "a.txt\n",
		"build/app.Dockerfile":              "FROM scratch\nCOPY . /app/\n",
		"build/app.Dockerfile.dockerignore": "b.txt\nbuild\n",
		"a.txt":                             "a\n",
		"b.txt":                             "b\n",
	})
	out := filepath.Join(e.dir, "out")
	e.build("-f", filepath.Join(ctx, "build", "app.Dockerfile"), "-o", "type=local,dest="+out, ctx)
	got := strings.Join(listTree(t, filepath.Join(out, "app")), " ")
	// app.Dockerfile.dockerignore replaces .dockerignore: a.txt is in, b.txt and build/ are out.
	if want := ".dockerignore Dockerfile a.txt"; got != want {
		t.Errorf("with -f build/app.Dockerfile copied %q, want %q", got, want)
	}
	// The plain Dockerfile still uses .dockerignore.
	out2 := filepath.Join(e.dir, "out2")
	e.build("-o", "type=local,dest="+out2, ctx)
	got = strings.Join(listTree(t, filepath.Join(out2, "default")), " ")
	if want := ".dockerignore Dockerfile b.txt build/app.Dockerfile build/app.Dockerfile.dockerignore"; got != want {
		t.Errorf("default Dockerfile copied %q, want %q", got, want)
	}
}

func TestDockerfileFromStdin(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("stdin", map[string]string{
		"Dockerfile": "FROM scratch\nCOPY wrong.txt /\n", // must not be used
		"right.txt":  "right\n",
	})
	df := strings.ReplaceAll("FROM {{BASE}}\nCOPY right.txt /from-stdin.txt\n", "{{BASE}}", baseRef)
	out := filepath.Join(e.dir, "out")
	r := e.runIn(df, nil, "build", "--progress=plain", "-f", "-", "-o", "type=local,dest="+out, ctx)
	if r.err != nil {
		t.Fatalf("build -f -: %v\n%s", r.err, r.out)
	}
	if got := readFile(t, filepath.Join(out, "from-stdin.txt")); got != "right\n" {
		t.Errorf("from-stdin.txt: %q", got)
	}
	if _, err := os.Stat(filepath.Join(out, "wrong.txt")); err == nil {
		t.Errorf("CONTEXT/Dockerfile was used instead of stdin")
	}
	// A second stdin build is fully cached.
	r = e.runIn(df, nil, "build", "--progress=plain", "-f", "-", ctx)
	if r.err != nil {
		t.Fatalf("build -f -: %v\n%s", r.err, r.out)
	}
	if m := missed(r.out); len(m) != 0 {
		t.Errorf("second stdin build missed %v\n%s", m, r.out)
	}
}

func TestBuildArgTargetLabel(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("args", map[string]string{
		"Dockerfile": `ARG FLAVOR=plain
FROM {{BASE}} AS base
ARG FLAVOR
ARG VERSION=0.0
COPY config.${FLAVOR}.json /config.json
LABEL version=$VERSION flavor=$FLAVOR
ENV VERSION=$VERSION

FROM base AS extra
COPY extra.txt /extra.txt

FROM nosuch.invalid/never:pulled AS unused
COPY extra.txt /

FROM base AS final
COPY final.txt /final.txt
`,
		"config.plain.json": `{"flavor":"plain"}`,
		"config.fancy.json": `{"flavor":"fancy"}`,
		"extra.txt":         "extra\n",
		"final.txt":         "final\n",
	})
	out := filepath.Join(e.dir, "out")
	arc := filepath.Join(e.dir, "x.tar")
	r := e.build("--build-arg", "FLAVOR=fancy", "--build-arg", "VERSION=2.5", "--target", "extra",
		"--label", "org.opencontainers.image.source=https://example.com/repo", "--label", "flavor=overridden",
		"-o", "type=local,dest="+out, "-o", "type=oci,dest="+arc, ctx)
	if got := readFile(t, filepath.Join(out, "config.json")); got != `{"flavor":"fancy"}` {
		t.Errorf("config.json %q: --build-arg FLAVOR not applied", got)
	}
	if _, err := os.Stat(filepath.Join(out, "extra.txt")); err != nil {
		t.Errorf("--target extra: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "final.txt")); err == nil {
		t.Errorf("--target extra built the final stage")
	}
	if strings.Contains(r.out, "nosuch.invalid") || strings.Contains(r.out, "final.txt") {
		t.Errorf("stages the target does not need were built:\n%s", r.out)
	}
	var cfg imageConfig
	skopeoJSON(t, &cfg, "inspect", "--config", "oci-archive:"+arc)
	l := cfg.Config.Labels
	if l["version"] != "2.5" || l["flavor"] != "overridden" || l["org.opencontainers.image.source"] != "https://example.com/repo" {
		t.Errorf("labels %v", l)
	}
	if !strings.Contains(strings.Join(cfg.Config.Env, " "), "VERSION=2.5") {
		t.Errorf("env %v", cfg.Config.Env)
	}
}

func TestBuildContextDir(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("main", map[string]string{
		"Dockerfile": "FROM scratch\nCOPY --from=assets /img/logo.svg /static/logo.svg\nCOPY --from=assets / /all/\nCOPY local.txt /\n",
		"local.txt":  "local\n",
	})
	assets := e.project("assets", map[string]string{
		"img/logo.svg":  "<svg/>\n",
		"img/other.png": "png\n",
	})
	out := filepath.Join(e.dir, "out")
	e.build("--build-context", "assets="+assets, "-o", "type=local,dest="+out, ctx)
	if got := readFile(t, filepath.Join(out, "static/logo.svg")); got != "<svg/>\n" {
		t.Errorf("logo.svg %q", got)
	}
	if got := strings.Join(listTree(t, filepath.Join(out, "all")), " "); got != "img/logo.svg img/other.png" {
		t.Errorf("COPY --from=assets / copied %q", got)
	}
	// Editing a file in the named context invalidates only the steps that read it.
	if err := os.WriteFile(filepath.Join(assets, "img/other.png"), []byte("png2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.build("--build-context", "assets="+assets, ctx)
	st := stepStates(r.out)
	for name, s := range st {
		switch {
		case strings.Contains(name, "logo.svg") && s != "CACHED":
			t.Errorf("%s: %s, want CACHED", name, s)
		case strings.Contains(name, "/ /all/") && s != "MISS":
			t.Errorf("%s: %s, want MISS", name, s)
		}
	}
}

func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		mode := int64(0o644)
		if strings.HasSuffix(n, ".sh") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: mode, Size: int64(len(files[n])), Typeflag: tar.TypeReg, Uid: 42, Gid: 43}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[n]))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestAddLocalArchiveURLAndHeredoc(t *testing.T) {
	e := newEnv(t)
	payload := "downloaded payload\n"
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(payload)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/files/payload.txt" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(payload))
	}))
	defer srv.Close()
	url := srv.URL + "/files/payload.txt"

	ctx := e.project("add", map[string]string{
		"Dockerfile": fmt.Sprintf(`FROM {{BASE}}
ADD vendor.tar.gz /opt/vendor/
ADD --checksum=%s %s /dl/
COPY <<EOF /etc/greeting
hello from a heredoc
EOF
COPY --chmod=0755 <<-SCRIPT /usr/local/bin/hi
	#!/bin/sh
	echo hi
	SCRIPT
`, sum, url),
	})
	if err := os.WriteFile(filepath.Join(ctx, "vendor.tar.gz"), tarGz(t, map[string]string{
		"lib/a.txt":   "a\n",
		"bin/tool.sh": "#!/bin/sh\n",
	}), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(e.dir, "out")
	e.build("-o", "type=local,dest="+out, ctx)
	for p, want := range map[string]string{
		"opt/vendor/lib/a.txt":   "a\n",
		"opt/vendor/bin/tool.sh": "#!/bin/sh\n",
		"dl/payload.txt":         payload,
		"etc/greeting":           "hello from a heredoc\n",
		"usr/local/bin/hi":       "#!/bin/sh\necho hi\n",
	} {
		if got, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", p, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "opt/vendor/vendor.tar.gz")); err == nil {
		t.Errorf("ADD of a local .tar.gz copied the archive instead of extracting it")
	}
	if st, err := os.Stat(filepath.Join(out, "opt/vendor/bin/tool.sh")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("extracted tool.sh: %v %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(out, "usr/local/bin/hi")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("heredoc --chmod: %v %v", st, err)
	}

	// A wrong checksum fails, naming the URL, both digests and the line.
	bad := "sha256:" + strings.Repeat("0", 64)
	df := filepath.Join(ctx, "Dockerfile")
	if err := os.WriteFile(df, []byte(fmt.Sprintf("FROM %s\nADD --checksum=%s %s /dl/\n", baseRef, bad, url)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.buildFail(ctx)
	for _, want := range []string{"Dockerfile:2", "checksum", sum, bad} {
		if !strings.Contains(r.out, want) {
			t.Errorf("wrong --checksum: output lacks %q:\n%s", want, r.out)
		}
	}
	// A URL that 404s fails clearly too.
	if err := os.WriteFile(df, []byte(fmt.Sprintf("FROM %s\nADD %s /dl/\n", baseRef, srv.URL+"/missing")), 0o644); err != nil {
		t.Fatal(err)
	}
	r = e.buildFail(ctx)
	if !strings.Contains(r.out, "404") || !strings.Contains(r.out, "Dockerfile:2") {
		t.Errorf("404 URL: %s", r.out)
	}
}
