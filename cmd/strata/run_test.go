package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The RUN end-to-end tests look at results only through independent tools: the OCI archive strata
// exports is untarred with archive/tar, layers are read raw (gzip + tar), and the root filesystem
// is unpacked by umoci.

// layerEntry is one header of a layer tar, with the content of regular files.
type layerEntry struct {
	hdr  *tar.Header
	data []byte
}

// ociResult is an exported image: the layout directory, its manifest, config and layers.
type ociResult struct {
	dir       string
	tag       string
	manifest  ocispec.Manifest
	config    ocispec.Image
	configRaw []byte
	layers    []map[string]layerEntry // per layer, by path without leading "./" or "/"
	layerRaw  [][]byte                // decompressed layer tars
}

// buildOCI builds ctx (extra args before it) and exports it as an OCI archive, which it unpacks.
func (e *env) buildOCI(name string, args ...string) (*ociResult, result) {
	e.t.Helper()
	tarPath := filepath.Join(e.dir, name+".oci.tar")
	tag := "v1"
	full := append([]string{"-t", "strata-test/" + name + ":" + tag, "-o", "type=oci,dest=" + tarPath}, args...)
	r := e.build(full...)
	return readOCI(e.t, tarPath, filepath.Join(e.dir, name+".oci"), tag), r
}

func readOCI(t *testing.T, tarPath, dir, tag string) *ociResult {
	t.Helper()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", tarPath, err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(p), 0o755)
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	o := &ociResult{dir: dir, tag: tag}
	var idx ocispec.Index
	mustJSON(t, filepath.Join(dir, "index.json"), &idx)
	if len(idx.Manifests) == 0 {
		t.Fatalf("%s: empty index", tarPath)
	}
	md := idx.Manifests[0]
	for _, m := range idx.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == tag {
			md = m
		}
	}
	mustJSON(t, blobFile(dir, md.Digest.String()), &o.manifest)
	o.configRaw, err = os.ReadFile(blobFile(dir, o.manifest.Config.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(o.configRaw, &o.config); err != nil {
		t.Fatal(err)
	}
	for _, l := range o.manifest.Layers {
		raw, err := os.ReadFile(blobFile(dir, l.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(l.MediaType, "gzip") {
			t.Fatalf("layer %s has media type %s; these tests read gzip layers", l.Digest, l.MediaType)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		o.layerRaw = append(o.layerRaw, plain)
		ents := map[string]layerEntry{}
		tr := tar.NewReader(bytes.NewReader(plain))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			data, _ := io.ReadAll(tr)
			name := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/"), "/")
			ents[name] = layerEntry{hdr: h, data: data}
		}
		o.layers = append(o.layers, ents)
	}
	return o
}

func blobFile(dir, dgst string) string {
	alg, hex, _ := strings.Cut(dgst, ":")
	return filepath.Join(dir, "blobs", alg, hex)
}

func mustJSON(t *testing.T, p string, v any) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// lastLayer returns the entries of the image's top layer.
func (o *ociResult) lastLayer() map[string]layerEntry { return o.layers[len(o.layers)-1] }

// unpack unpacks the image with umoci and returns the root filesystem directory.
func (o *ociResult) unpack(t *testing.T) string {
	t.Helper()
	bundle := o.dir + ".bundle"
	out, err := exec.Command("umoci", "unpack", "--image", o.dir+":"+o.tag, bundle).CombinedOutput()
	if err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	return filepath.Join(bundle, "rootfs")
}

// fileInfo describes a path the way the tests compare trees.
type fileInfo struct {
	kind     string // "file", "dir", "symlink"
	mode     os.FileMode
	uid, gid int
	content  string // file content or symlink target
}

func (f fileInfo) String() string {
	return fmt.Sprintf("%s %04o %d:%d %q", f.kind, f.mode, f.uid, f.gid, f.content)
}

// tree describes every path under root/sub, relative to root.
func tree(t *testing.T, root, sub string) map[string]fileInfo {
	t.Helper()
	m := map[string]fileInfo{}
	base := filepath.Join(root, sub)
	err := filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := fi.Sys().(*syscall.Stat_t)
		info := fileInfo{mode: fi.Mode().Perm() | fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky), uid: int(st.Uid), gid: int(st.Gid)}
		switch {
		case fi.Mode().IsRegular():
			info.kind = "file"
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			info.content = string(data)
		case fi.IsDir():
			info.kind = "dir"
		case fi.Mode()&os.ModeSymlink != 0:
			info.kind = "symlink"
			info.mode = 0
			info.content, _ = os.Readlink(p)
		default:
			info.kind = fi.Mode().Type().String()
		}
		m[rel] = info
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func compareTree(t *testing.T, got, want map[string]fileInfo) {
	t.Helper()
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !wok:
			t.Errorf("unexpected %s: %v", k, g)
		case !gok:
			t.Errorf("missing %s: want %v", k, w)
		case g != w:
			t.Errorf("%s: got %v, want %v", k, g, w)
		}
	}
}

func fileAt(t *testing.T, rootfs, p string) string {
	t.Helper()
	return readFile(t, filepath.Join(rootfs, p))
}

func TestRunFilesystemChangesBecomeExactLayers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("fschanges", map[string]string{
		"Dockerfile": `FROM {{BASE}}
RUN mkdir -p /data/keep /data/gone/sub /data/recreate && \
    echo a > /data/keep/a && echo b > /data/gone/sub/b && echo old > /data/recreate/old && \
    echo m > /data/mod && echo x > /data/rmfile && echo p > /data/perm && echo o > /data/own && \
    echo untouched > /data/untouched
RUN echo more >> /data/mod && rm /data/rmfile && rm -rf /data/gone && \
    rm -rf /data/recreate && mkdir /data/recreate && echo new > /data/recreate/new && \
    chmod 0600 /data/perm && chmod 0700 /data/keep && chown 1000:1000 /data/own && \
    echo created > /data/new && mkdir -p /data/newdir/sub && ln -s ../mod /data/newdir/link && \
    rm /usr/bin/yes && chmod 0640 /etc/group
`,
	})
	o, _ := e.buildOCI("fschanges", ctx)
	rootfs := o.unpack(t)

	want := map[string]fileInfo{
		"data":              {kind: "dir", mode: 0o755},
		"data/keep":         {kind: "dir", mode: 0o700},
		"data/keep/a":       {kind: "file", mode: 0o644, content: "a\n"},
		"data/recreate":     {kind: "dir", mode: 0o755},
		"data/recreate/new": {kind: "file", mode: 0o644, content: "new\n"},
		"data/mod":          {kind: "file", mode: 0o644, content: "m\nmore\n"},
		"data/perm":         {kind: "file", mode: 0o600, content: "p\n"},
		"data/own":          {kind: "file", mode: 0o644, uid: 1000, gid: 1000, content: "o\n"},
		"data/untouched":    {kind: "file", mode: 0o644, content: "untouched\n"},
		"data/new":          {kind: "file", mode: 0o644, content: "created\n"},
		"data/newdir":       {kind: "dir", mode: 0o755},
		"data/newdir/sub":   {kind: "dir", mode: 0o755},
		"data/newdir/link":  {kind: "symlink", content: "../mod"},
	}
	compareTree(t, tree(t, rootfs, "data"), want)
	if _, err := os.Lstat(filepath.Join(rootfs, "usr/bin/yes")); !os.IsNotExist(err) {
		t.Errorf("/usr/bin/yes (from the base layer, deleted by RUN) still exists: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "usr/bin/wc")); err != nil {
		t.Errorf("/usr/bin/wc (untouched base file) missing: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "etc/group")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("/etc/group (base file chmodded): %v, %v", fi, err)
	}

	// The layers as written: the second RUN's layer has whiteouts for what it deleted, an opaque
	// marker for the recreated directory, and nothing it did not touch.
	if n := len(o.layers); n < 3 {
		t.Fatalf("%d layers, want base + 2 RUN layers", n)
	}
	l := o.lastLayer()
	for _, wh := range []string{"data/.wh.rmfile", "data/.wh.gone", "usr/bin/.wh.yes", "data/recreate/.wh..wh..opq"} {
		if _, ok := l[wh]; !ok {
			t.Errorf("layer lacks whiteout %s", wh)
		}
	}
	for _, absent := range []string{"data/keep/a", "data/untouched", "data/recreate/old", "data/gone", "data/gone/sub/b", "data/rmfile", "usr/bin/wc", "etc/passwd"} {
		if _, ok := l[absent]; ok {
			t.Errorf("layer contains %s, which the step did not create or change", absent)
		}
	}
	if ent, ok := l["data/own"]; !ok || ent.hdr.Uid != 1000 || ent.hdr.Gid != 1000 {
		t.Errorf("layer entry data/own: %+v", ent.hdr)
	}
	if ent, ok := l["data/perm"]; !ok || ent.hdr.Mode&0o7777 != 0o600 {
		t.Errorf("layer entry data/perm: %+v", ent.hdr)
	}
	for name := range l {
		if !strings.HasPrefix(name, "data") && !strings.HasPrefix(name, "usr") && !strings.HasPrefix(name, "etc") {
			t.Errorf("layer contains %s, outside what the step changed (runtime leftovers?)", name)
		}
		if name == "etc/hosts" || name == "etc/resolv.conf" || name == "etc/hostname" {
			t.Errorf("layer contains runtime-provided %s", name)
		}
	}
	// Whiteouts are the only entries whose name starts with .wh.; they must be empty regular files.
	for name, ent := range l {
		if strings.Contains(name, ".wh.") && (ent.hdr.Typeflag != tar.TypeReg || ent.hdr.Size != 0) {
			t.Errorf("whiteout %s: type %c size %d", name, ent.hdr.Typeflag, ent.hdr.Size)
		}
	}
}

func TestRunUserWorkdirEnvArgsFormsAndHeredocs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("forms", map[string]string{
		"Dockerfile": "FROM {{BASE}}\n" +
			"ARG GREETING\n" +
			"ENV FOO=bar\n" +
			"WORKDIR /work/deep\n" +
			"RUN echo \"$FOO $GREETING\" > env.txt && pwd > pwd.txt\n" +
			"RUN [\"/bin/sh\", \"-c\", \"echo exec-form $FOO > /work/deep/exec.txt\"]\n" +
			"RUN [\"/bin/touch\", \"/work/deep/exec-touch.txt\"]\n" +
			"SHELL [\"/bin/sh\", \"-ec\"]\n" +
			"RUN echo \"flags=$-\" > shell.txt\n" +
			"SHELL [\"/bin/sh\", \"-c\"]\n" +
			"RUN echo \"flags=$-\" > shell-c.txt\n" +
			"RUN <<EOF\n" +
			"echo heredoc1 > h1.txt\n" +
			"echo \"line2 $FOO\" >> h1.txt\n" +
			"EOF\n" +
			"RUN <<-EOF\n" +
			"\techo dash > h2.txt\n" +
			"\tEOF\n" +
			"RUN <<EOF\n" +
			"#!/usr/bin/awk -f\n" +
			"BEGIN { print \"awk-ran\" > \"/work/deep/h3.txt\" }\n" +
			"EOF\n" +
			"RUN cat <<A > multi-a.txt && cat <<B > multi-b.txt\n" +
			"alpha\n" +
			"A\n" +
			"beta\n" +
			"B\n" +
			"RUN mkdir -p /home/app && chown app:app /home/app\n" +
			"USER app\n" +
			"WORKDIR /home/app/sub\n" +
			"RUN id -u > /home/app/uid.txt && id -g >> /home/app/uid.txt && echo hi > /home/app/owned.txt && mkdir /home/app/d && pwd > /home/app/pwd.txt\n" +
			"USER 1000:0\n" +
			"RUN touch /home/app/numeric.txt\n",
	})
	o, _ := e.buildOCI("forms", "--build-arg", "GREETING=hello-arg", ctx)
	rootfs := o.unpack(t)

	checks := map[string]string{
		"work/deep/env.txt":     "bar hello-arg\n",
		"work/deep/pwd.txt":     "/work/deep\n",
		"work/deep/exec.txt":    "exec-form bar\n",
		"work/deep/h1.txt":      "heredoc1\nline2 bar\n",
		"work/deep/h2.txt":      "dash\n",
		"work/deep/h3.txt":      "awk-ran\n",
		"work/deep/multi-a.txt": "alpha\n",
		"work/deep/multi-b.txt": "beta\n",
		"home/app/uid.txt":      "1000\n1000\n",
		"home/app/owned.txt":    "hi\n",
		"home/app/pwd.txt":      "/home/app/sub\n",
	}
	for p, want := range checks {
		if got := fileAt(t, rootfs, p); got != want {
			t.Errorf("/%s = %q, want %q", p, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(rootfs, "work/deep/exec-touch.txt")); err != nil {
		t.Errorf("exec form without a shell did not run: %v", err)
	}
	if got := fileAt(t, rootfs, "work/deep/shell.txt"); !strings.Contains(strings.TrimPrefix(got, "flags="), "e") {
		t.Errorf("SHELL [\"/bin/sh\", \"-ec\"] did not set errexit: %q", got)
	}
	if got := fileAt(t, rootfs, "work/deep/shell-c.txt"); strings.Contains(strings.TrimPrefix(got, "flags="), "e") {
		t.Errorf("after SHELL [\"/bin/sh\", \"-c\"], errexit is still set: %q", got)
	}
	for p, owner := range map[string][2]int{
		"home/app/owned.txt":   {1000, 1000},
		"home/app/d":           {1000, 1000},
		"home/app/numeric.txt": {1000, 0},
		"work/deep/env.txt":    {0, 0},
	} {
		fi, err := os.Lstat(filepath.Join(rootfs, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != owner[0] || int(st.Gid) != owner[1] {
			t.Errorf("/%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, owner[0], owner[1])
		}
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "home/app/sub")); err != nil || !fi.IsDir() {
		t.Errorf("WORKDIR /home/app/sub not created: %v", err)
	}
	// The build arg is not part of the image config, the ENV is.
	if !containsStr(o.config.Config.Env, "FOO=bar") {
		t.Errorf("config env %v lacks FOO=bar", o.config.Config.Env)
	}
	for _, kv := range o.config.Config.Env {
		if strings.HasPrefix(kv, "GREETING=") {
			t.Errorf("build arg leaked into the image config env: %s", kv)
		}
	}
	if o.config.Config.User != "1000:0" || o.config.Config.WorkingDir != "/home/app/sub" {
		t.Errorf("config user %q workdir %q", o.config.Config.User, o.config.Config.WorkingDir)
	}

	// A changed build arg re-runs the step that uses it (and only steps after it).
	r := e.build("--build-arg", "GREETING=other", ctx)
	st := stepStates(r.out)
	for name, s := range st {
		if strings.Contains(name, "env.txt") && s != "MISS" {
			t.Errorf("%s: %s after changing GREETING, want MISS", name, s)
		}
		if strings.Contains(name, "WORKDIR /work/deep") && s != "CACHED" {
			t.Errorf("%s: %s after changing GREETING, want CACHED", name, s)
		}
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRunFailureNamesLineAndRerunStartsFromCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("fail", map[string]string{
		"Dockerfile": "FROM {{BASE}}\n" +
			"RUN echo one > /one\n" +
			"RUN echo two > /two\n" +
			"RUN echo early-output; echo last-line-marker >&2; exit 3\n",
	})
	r := e.buildFail(ctx)
	for _, want := range []string{"Dockerfile:4", "exit code: 3", "last-line-marker"} {
		if !r.has(want) {
			t.Errorf("failure output lacks %q:\n%s", want, r.out)
		}
	}
	// The error block (after "ERROR:") itself carries the line, the code and the output tail.
	_, errPart, ok := strings.Cut(r.out, "ERROR:")
	if !ok {
		t.Fatalf("no ERROR: in output:\n%s", r.out)
	}
	for _, want := range []string{"Dockerfile:4", "exit code: 3", "last-line-marker", "echo early-output"} {
		if !strings.Contains(errPart, want) {
			t.Errorf("ERROR block lacks %q:\n%s", want, errPart)
		}
	}
	if r.code == 0 {
		t.Errorf("exit code 0 for a failed build")
	}

	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(strings.ReplaceAll(
		"FROM {{BASE}}\nRUN echo one > /one\nRUN echo two > /two\nRUN echo fixed > /three\n", "{{BASE}}", baseRef)), 0o644); err != nil {
		t.Fatal(err)
	}
	o, r2 := e.buildOCI("fixed", ctx)
	st := stepStates(r2.out)
	var sawOne, sawTwo, sawThree bool
	for name, s := range st {
		switch {
		case strings.HasSuffix(name, "RUN echo one > /one"):
			sawOne = true
			if s != "CACHED" {
				t.Errorf("%s: %s, want CACHED", name, s)
			}
		case strings.HasSuffix(name, "RUN echo two > /two"):
			sawTwo = true
			if s != "CACHED" {
				t.Errorf("%s: %s, want CACHED", name, s)
			}
		case strings.HasSuffix(name, "RUN echo fixed > /three"):
			sawThree = true
			if s != "MISS" {
				t.Errorf("%s: %s, want MISS", name, s)
			}
		}
	}
	if !sawOne || !sawTwo || !sawThree {
		t.Fatalf("steps not found in progress %v:\n%s", st, r2.out)
	}
	rootfs := o.unpack(t)
	for p, want := range map[string]string{"one": "one\n", "two": "two\n", "three": "fixed\n"} {
		if got := fileAt(t, rootfs, p); got != want {
			t.Errorf("/%s = %q, want %q", p, got, want)
		}
	}
}

func TestRunBadInputClearErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, dockerfile string
		args             []string
		want             []string
	}{
		{"insecure", "FROM {{BASE}}\nRUN --security=insecure echo hi\n", nil,
			[]string{"security.insecure", "--allow", "Dockerfile:2"}},
		{"nouser", "FROM {{BASE}}\nUSER nosuchuser\nRUN echo hi\n", nil,
			[]string{"nosuchuser", "Dockerfile:3"}},
		{"nogroup", "FROM {{BASE}}\nUSER app:nosuchgroup\nRUN echo hi\n", nil,
			[]string{"nosuchgroup"}},
		{"heredoc", "FROM {{BASE}}\nRUN <<EOF\necho never closed\n", nil,
			[]string{"unterminated heredoc", "Dockerfile:2"}},
		{"secret", "FROM {{BASE}}\nRUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok\n", nil,
			[]string{"tok", "Dockerfile:2"}},
		{"badnetwork", "FROM {{BASE}}\nRUN --network=bogus echo hi\n", nil,
			[]string{"bogus"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := e.project(c.name, map[string]string{"Dockerfile": c.dockerfile})
			r := e.buildFail(append(c.args, ctx)...)
			_, errPart, ok := strings.Cut(r.out, "ERROR:")
			if !ok {
				t.Fatalf("no ERROR: line:\n%s", r.out)
			}
			for _, w := range c.want {
				if !strings.Contains(errPart, w) {
					t.Errorf("error lacks %q:\n%s", w, r.out)
				}
			}
			if strings.Contains(r.out, "panic") || strings.Contains(r.out, "goroutine ") {
				t.Errorf("crash:\n%s", r.out)
			}
		})
	}
	// With --allow security.insecure the same step runs, with full capabilities.
	t.Run("insecure-allowed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := e.project("insecure-ok", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
			"RUN --security=insecure grep CapEff /proc/self/status > /capeff\n" +
			"RUN grep CapEff /proc/self/status > /capeff-default\n"})
		o, _ := e.buildOCI("insecure", "--allow", "security.insecure", ctx)
		rootfs := o.unpack(t)
		ins, def := fileAt(t, rootfs, "capeff"), fileAt(t, rootfs, "capeff-default")
		if ins == def {
			t.Errorf("insecure and default steps have the same capabilities: %q", ins)
		}
	})
}
