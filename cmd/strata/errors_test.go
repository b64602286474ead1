package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/testenv"
)

// Bad input gets a one-line cause naming the path and the Dockerfile line, a non-zero exit, and
// leaves the store consistent: after each failure a known-good build still succeeds, fully
// CACHED, with the same digest, and no scratch files are left behind.

// goodBuild is the known-good build every error case is followed by.
type goodBuild struct {
	ctx, digest string
}

func newGoodBuild(e *env) *goodBuild {
	e.t.Helper()
	ctx := e.project("good", map[string]string{
		"Dockerfile": "FROM {{BASE}} AS build\nCOPY a.txt /a.txt\nCOPY sub /sub\n\nFROM {{BASE}}\nCOPY --from=build /a.txt /sub /out/\nLABEL good=1\n",
		"a.txt":      "a\n",
		"sub/b.txt":  "b\n",
	})
	iid := filepath.Join(e.dir, "good.iid")
	e.build("-t", "good:1", "--iidfile", iid, ctx)
	return &goodBuild{ctx: ctx, digest: readFile(e.t, iid)}
}

// check asserts the store is consistent after a failed build.
func (g *goodBuild) check(e *env, after string) {
	e.t.Helper()
	if ents, err := os.ReadDir(filepath.Join(e.root, "tmp")); err == nil && len(ents) > 0 {
		var names []string
		for _, d := range ents {
			names = append(names, d.Name())
		}
		e.t.Errorf("after %s: store tmp/ not cleaned: %v", after, names)
	}
	iid := filepath.Join(e.dir, "check.iid")
	r := e.run("build", "--progress=plain", "-t", "good:1", "--iidfile", iid, g.ctx)
	if r.err != nil {
		e.t.Fatalf("after %s: good build fails: %v\n%s", after, r.err, r.out)
	}
	for name, st := range stepStates(r.out) {
		if st != "CACHED" {
			e.t.Errorf("after %s: good rebuild step %q %s, want CACHED\n%s", after, name, st, r.out)
		}
	}
	if d := readFile(e.t, iid); d != g.digest {
		e.t.Errorf("after %s: good rebuild digest %s, want %s", after, d, g.digest)
	}
	if r := e.run("images"); !strings.Contains(r.out, "good:1") {
		e.t.Errorf("after %s: tag good:1 lost:\n%s", after, r.out)
	}
}

// errLine returns the final "ERROR: …" line of a failed build.
func errLine(t *testing.T, out string) string {
	t.Helper()
	i := strings.LastIndex(out, "\nERROR: ")
	if i < 0 {
		if strings.HasPrefix(out, "ERROR: ") {
			i = -1
		} else {
			t.Fatalf("no ERROR line in:\n%s", out)
		}
	}
	line, _, _ := strings.Cut(out[i+1:], "\n")
	return line
}

func TestBuildErrors(t *testing.T) {
	e := newEnv(t)
	good := newGoodBuild(e)

	cases := []struct {
		name       string
		dockerfile string            // written to CONTEXT/Dockerfile
		files      map[string]string // extra context files
		args       []string          // extra build flags
		want       []string          // substrings of the final ERROR line
	}{
		{
			name:       "unknown instruction",
			dockerfile: "FROM {{BASE}}\nCOPY a.txt /\nFROBNICATE x\n",
			want:       []string{"Dockerfile:3", "unknown instruction", "FROBNICATE"},
		},
		{
			name:       "unknown flag",
			dockerfile: "FROM {{BASE}}\nCOPY --frob=1 a.txt /\n",
			want:       []string{"Dockerfile:2", "unknown flag", "--frob"},
		},
		{
			name:       "missing COPY source",
			dockerfile: "FROM {{BASE}}\nCOPY a.txt /\nCOPY missing/file.txt /x/\n",
			want:       []string{"Dockerfile:3", "missing/file.txt", "not found"},
		},
		{
			name:       "missing COPY --from source names the stage",
			dockerfile: "FROM {{BASE}} AS one\nFROM {{BASE}}\nCOPY --from=one /nosuch /x\n",
			want:       []string{"Dockerfile:3", `"/nosuch": not found in stage one`},
		},
		{
			name:       "COPY source excluded by .dockerignore",
			dockerfile: "FROM {{BASE}}\nCOPY secret.key /\n",
			files:      map[string]string{"secret.key": "k\n", ".dockerignore": "*.key\n"},
			want:       []string{"Dockerfile:2", "secret.key", "not found"},
		},
		{
			name:       "missing --target stage",
			dockerfile: "FROM {{BASE}} AS one\nCOPY a.txt /\n",
			args:       []string{"--target", "nosuch"},
			want:       []string{"nosuch", "one"},
		},
		{
			name:       "missing --from stage",
			dockerfile: "FROM {{BASE}}\nCOPY --from=127.0.0.1:1/nosuchstage:1 a.txt /\n",
			want:       []string{"Dockerfile:2", "nosuchstage"},
		},
		{
			name:       "cyclic --from",
			dockerfile: "FROM {{BASE}} AS a\nCOPY --from=b /a.txt /\n\nFROM {{BASE}} AS b\nCOPY --from=a /a.txt /\n",
			args:       []string{"--target", "a"},
			want:       []string{"Dockerfile:", "circular"},
		},
		{
			name:       "unreachable registry",
			dockerfile: "FROM 127.0.0.1:1/xy:1\nCOPY a.txt /\n",
			want:       []string{"Dockerfile:1", "127.0.0.1:1/xy:1", "connection refused"},
		},
		{
			name:       "image not in the registry",
			dockerfile: "FROM " + testReg.Addr() + "/does/not-exist:1\nCOPY a.txt /\n",
			want:       []string{"Dockerfile:1", "does/not-exist"},
		},
		{
			name:       "bad --platform",
			dockerfile: "FROM {{BASE}}\n",
			args:       []string{"--platform", "linux/"},
			want:       []string{"--platform", "invalid platform"},
		},

		{
			name:       "bad --progress",
			dockerfile: "FROM {{BASE}}\n",
			args:       []string{"--progress=bogus"},
			want:       []string{"--progress", "bogus"},
		},
		{
			name:       "unknown -o type",
			dockerfile: "FROM {{BASE}}\n",
			args:       []string{"-o", "type=bogus,dest=x"},
			want:       []string{"--output", "bogus"},
		},
		{
			name:       "-o without dest",
			dockerfile: "FROM {{BASE}}\n",
			args:       []string{"-o", "type=oci"},
			want:       []string{"--output", "dest"},
		},
		{
			name:       "-o without type",
			dockerfile: "FROM {{BASE}}\n",
			args:       []string{"-o", "dest=x"},
			want:       []string{"--output", "type"},
		},
		{
			name:       "--push without a tag",
			dockerfile: "FROM {{BASE}}\n",
			args:       []string{"--push"},
			want:       []string{"-t"},
		},
		{
			name:       "unknown build flag",
			dockerfile: "FROM {{BASE}}\n",
			args:       []string{"--frobnicate"},
			want:       []string{"--frobnicate"},
		},
		{
			name:       "missing Dockerfile",
			dockerfile: "",
			args:       []string{"-f", "/nonexistent/Dockerfile"},
			want:       []string{"/nonexistent/Dockerfile"},
		},
		{
			name:       "--build-context to a missing directory",
			dockerfile: "FROM {{BASE}} AS a\nFROM b AS c\nCOPY a.txt /\n",
			args:       []string{"--build-context", "b=/nonexistent-dir"},
			want:       []string{"--build-context", "/nonexistent-dir"},
		},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{"a.txt": "a\n"}
			if c.dockerfile != "" {
				files["Dockerfile"] = c.dockerfile
			}
			for k, v := range c.files {
				files[k] = v
			}
			ctx := e.project("case"+string(rune('a'+i)), files)
			r := e.run(append(append([]string{"build", "--progress=plain"}, c.args...), ctx)...)
			if r.err == nil || r.code == 0 {
				t.Fatalf("build succeeded (code %d), want failure:\n%s", r.code, r.out)
			}
			line := errLine(t, r.out)
			t.Log(line)
			for _, w := range c.want {
				if !strings.Contains(line, w) {
					t.Errorf("error line lacks %q:\n%s\nfull output:\n%s", w, line, r.out)
				}
			}
			if strings.Contains(line, "panic") || strings.Contains(r.out, "goroutine ") {
				t.Errorf("panic:\n%s", r.out)
			}
			good.check(e, c.name)
		})
	}
}

// A context symlink that points outside the context is copied as a link; it is never followed
// out, whether it is inside a copied directory or named as the source.
func TestContextSymlinkOutsideIsNotFollowed(t *testing.T) {
	testenv.RequireTools(t, "skopeo", "umoci", "tar")
	e := newEnv(t)
	good := newGoodBuild(e)
	secret := filepath.Join(e.dir, "outside-secret.txt")
	if err := os.WriteFile(secret, []byte("HOST SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := e.project("links", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY . /ctx/\n",
		"plain.txt":  "plain\n",
	})
	links := map[string]string{
		"abs":    secret,                  // absolute, outside
		"rel":    "../outside-secret.txt", // relative, climbs out
		"d/up":   "../../",                // a directory link climbing out
		"inside": "plain.txt",             // an ordinary link
	}
	for name, target := range links {
		p := filepath.Join(ctx, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	dest := filepath.Join(e.dir, "x.tar")
	e.build("-t", "links:1", "-o", "type=oci,dest="+dest, ctx)

	// Every layer, read with tar: the links are links with their original targets, and no layer
	// holds the secret's content.
	layout := filepath.Join(e.dir, "layout")
	untar(t, dest, layout)
	var idx ocispec.Index
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(layout, "index.json"))), &idx); err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal([]byte(readFile(t, layoutBlob(layout, idx.Manifests[0].Digest))), &m); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, l := range m.Layers {
		out, err := exec.Command("tar", "-tvzf", layoutBlob(layout, l.Digest)).CombinedOutput()
		if err != nil {
			t.Fatalf("tar -tvzf layer: %v\n%s", err, out)
		}
		for _, ln := range strings.Split(string(out), "\n") {
			for name, target := range links {
				if strings.HasSuffix(ln, "ctx/"+name+" -> "+target) && strings.HasPrefix(ln, "l") {
					seen[name] = target
				}
			}
		}
		data, err := exec.Command("sh", "-c", "gzip -dc "+layoutBlob(layout, l.Digest)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "HOST SECRET") {
			t.Errorf("layer %s contains the content of a file outside the context", l.Digest)
		}
	}
	for name, target := range links {
		if seen[name] != target {
			t.Errorf("ctx/%s: not a symlink to %s in any layer", name, target)
		}
	}
	// umoci agrees.
	rootfs := umociUnpack(t, layout, "1")
	for name, target := range links {
		got, err := os.Readlink(filepath.Join(rootfs, "ctx", name))
		if err != nil || got != target {
			t.Errorf("umoci: ctx/%s -> %q (%v), want -> %q", name, got, err, target)
		}
	}

	// Naming a link as the source never reads outside: it fails (or, BuildKit-style, resolves
	// inside the context and finds nothing); the secret never lands in the image.
	for i, src := range []string{"rel", "abs", "d/up/outside-secret.txt", "d/up/"} {
		df := "FROM {{BASE}}\nCOPY " + src + " /got/\n"
		os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(strings.ReplaceAll(df, "{{BASE}}", baseRef)), 0o644)
		out := filepath.Join(e.dir, "local"+string(rune('0'+i)))
		r := e.run("build", "--progress=plain", "-o", "type=local,dest="+out, ctx)
		if r.err == nil {
			if data, _ := exec.Command("grep", "-rl", "HOST SECRET", out).Output(); len(data) > 0 {
				t.Errorf("COPY %s: the outside file was followed: %s", src, data)
			}
			continue
		}
		line := errLine(t, r.out)
		t.Log(line)
		if !strings.Contains(line, "Dockerfile:2") || !strings.Contains(line, strings.TrimSuffix(src, "/")) {
			t.Errorf("COPY %s: error line %q lacks the Dockerfile line or the path", src, line)
		}
		good.check(e, "COPY "+src)
	}
}

func layoutBlob(layout string, d digest.Digest) string {
	return filepath.Join(layout, "blobs", d.Algorithm().String(), d.Encoded())
}

// An index without the build's platform fails with a clear error naming the platform; a
// single-platform image of another platform is used with BuildKit's InvalidBaseImagePlatform
// warning, as BuildKit v0.33.1 does.
func TestImageWithoutPlatform(t *testing.T) {
	testenv.RequireTools(t, "skopeo", "umoci")
	e := newEnv(t)
	good := newGoodBuild(e)

	layout := filepath.Join(e.dir, "armlayout")
	if _, err := testenv.BuildBusyboxImage(layout); err != nil {
		t.Fatal(err)
	}
	// A single arm64 manifest, and an index listing only arm64.
	if out, err := exec.Command("umoci", "config", "--image", layout+":latest", "--architecture", "arm64", "--tag", "arm64").CombinedOutput(); err != nil {
		t.Fatalf("umoci config: %v\n%s", err, out)
	}
	single := testReg.Addr() + "/armonly/single:1"
	if err := testenv.Skopeo("copy", "--quiet", "--dest-tls-verify=false", "oci:"+layout+":arm64", "docker://"+single); err != nil {
		t.Fatal(err)
	}
	multi := testReg.Addr() + "/armonly/index:1"
	writeArmIndex(t, layout)
	if err := testenv.Skopeo("copy", "--quiet", "--all", "--dest-tls-verify=false", "oci:"+layout+":armindex", "docker://"+multi); err != nil {
		t.Fatal(err)
	}
	var raw struct{ MediaType string }
	skopeoJSON(t, &raw, "inspect", "--raw", "--tls-verify=false", "docker://"+multi)
	if !strings.Contains(raw.MediaType, "index") && !strings.Contains(raw.MediaType, "list") {
		t.Fatalf("fixture %s is %s, not an index", multi, raw.MediaType)
	}

	ctx := e.project("arm-single", map[string]string{
		"Dockerfile": "FROM " + single + "\nCOPY a.txt /\n",
		"a.txt":      "a\n",
	})
	r := e.build(ctx)
	if want := `Dockerfile:1: InvalidBaseImagePlatform: Base image ` + single + ` was pulled with platform "linux/arm64", expected "linux/amd64" for current build`; !r.has(want) {
		t.Errorf("no warning %q\n%s", want, r.out)
	}

	for _, ref := range []string{multi} {
		ctx := e.project("arm-"+strings.ReplaceAll(ref[strings.LastIndex(ref, "/")+1:], ":", "-"), map[string]string{
			"Dockerfile": "FROM " + ref + "\nCOPY a.txt /\n",
			"a.txt":      "a\n",
		})
		r := e.buildFail(ctx)
		line := errLine(t, r.out)
		t.Log(line)
		for _, w := range []string{"Dockerfile:1", "linux/amd64"} {
			if !strings.Contains(line, w) {
				t.Errorf("FROM %s: error line lacks %q: %s\n%s", ref, w, line, r.out)
			}
		}
		good.check(e, "FROM "+ref)
	}
}

// writeArmIndex adds an image index naming only the layout's arm64 manifest, tagged "armindex".
func writeArmIndex(t *testing.T, layout string) {
	t.Helper()
	var top ocispec.Index
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(layout, "index.json"))), &top); err != nil {
		t.Fatal(err)
	}
	var arm *ocispec.Descriptor
	for i, d := range top.Manifests {
		if d.Annotations[ocispec.AnnotationRefName] == "arm64" {
			arm = &top.Manifests[i]
		}
	}
	if arm == nil {
		t.Fatalf("no arm64 manifest in %s", layout)
	}
	entry := ocispec.Descriptor{MediaType: arm.MediaType, Digest: arm.Digest, Size: arm.Size,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}}
	img := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{entry}}
	img.SchemaVersion = 2
	data, _ := json.Marshal(img)
	d := digest.FromBytes(data)
	if err := os.WriteFile(layoutBlob(layout, d), data, 0o644); err != nil {
		t.Fatal(err)
	}
	top.Manifests = append(top.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: int64(len(data)),
		Annotations: map[string]string{ocispec.AnnotationRefName: "armindex"}})
	data, _ = json.Marshal(top)
	if err := os.WriteFile(filepath.Join(layout, "index.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
