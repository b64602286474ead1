package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-build/strata/internal/testenv"
)

// The output tests check what strata writes with tools that are not strata: skopeo, umoci, tar and
// encoding/json.

const multiStageDockerfile = `# syntax=docker/dockerfile:1
FROM {{BASE}} AS build
WORKDIR /app
COPY package.json ./
COPY src ./src
COPY --chmod=0755 run.sh ./bin/run.sh

FROM {{BASE}}
ENV APP_HOME=/srv/app MODE=prod
LABEL org.example.team="core" version=1.0
WORKDIR /srv/app
COPY --from=build --chown=1000:1000 /app/src ./src
COPY --from=build /app/package.json ./
COPY --from=build --chmod=0755 /app/bin/run.sh /usr/local/bin/run
EXPOSE 8080/tcp
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/run"]
CMD ["--serve"]
`

func multiStageProject(e *env) string {
	return e.project("multi", map[string]string{
		"Dockerfile":   multiStageDockerfile,
		"package.json": `{"name":"app"}`,
		"src/app.js":   "console.log(1)\n",
		"src/lib.js":   "module.exports = 2\n",
		"run.sh":       "#!/bin/sh\necho run\n",
	})
}

// untar extracts a tar file with the system's tar (an independent reader).
func untar(t *testing.T, file, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", file, "-C", dst).CombinedOutput(); err != nil {
		t.Fatalf("tar -xf %s: %v\n%s", file, err, out)
	}
}

// tarNames lists a tar's entries with archive/tar.
func tarNames(t *testing.T, file string) map[string]*tar.Header {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		names[strings.TrimPrefix(h.Name, "./")] = h
	}
}

func skopeoJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, err := testenv.SkopeoOutput(args...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, out)
	}
}

// inspectDigest returns skopeo's manifest digest for a transport reference.
func inspectDigest(t *testing.T, args ...string) string {
	t.Helper()
	var info struct{ Digest string }
	skopeoJSON(t, &info, append([]string{"inspect"}, args...)...)
	if !strings.HasPrefix(info.Digest, "sha256:") {
		t.Fatalf("skopeo inspect %v: digest %q", args, info.Digest)
	}
	return info.Digest
}

type imageConfig struct {
	Architecture string
	OS           string
	Config       struct {
		User         string
		Env          []string
		Entrypoint   []string
		Cmd          []string
		WorkingDir   string
		Labels       map[string]string
		ExposedPorts map[string]struct{}
	}
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		CreatedBy  string `json:"created_by"`
		EmptyLayer bool   `json:"empty_layer"`
	}
}

// umociUnpack unpacks layoutDir:tag into a bundle with umoci and returns the rootfs.
func umociUnpack(t *testing.T, layoutDir, tag string) string {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "bundle")
	out, err := exec.Command("umoci", "unpack", "--image", layoutDir+":"+tag, bundle).CombinedOutput()
	if err != nil {
		t.Fatalf("umoci unpack %s:%s: %v\n%s", layoutDir, tag, err, out)
	}
	return filepath.Join(bundle, "rootfs")
}

// checkFile asserts a file's content (if want != ""), permission bits and owner.
func checkFile(t *testing.T, rootfs, p, want string, mode os.FileMode, uid, gid int) {
	t.Helper()
	full := filepath.Join(rootfs, p)
	st, err := os.Lstat(full)
	if err != nil {
		t.Errorf("%s: %v", p, err)
		return
	}
	if want != "" {
		if got := readFile(t, full); got != want {
			t.Errorf("%s: content %q, want %q", p, got, want)
		}
	}
	if st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), mode)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if int(sys.Uid) != uid || int(sys.Gid) != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, sys.Uid, sys.Gid, uid, gid)
	}
}

func checkMultiStageConfig(t *testing.T, c imageConfig) {
	t.Helper()
	if c.Architecture != "amd64" || c.OS != "linux" {
		t.Errorf("platform %s/%s", c.OS, c.Architecture)
	}
	cfg := c.Config
	if cfg.User != "1000:1000" {
		t.Errorf("User %q", cfg.User)
	}
	env := strings.Join(cfg.Env, "\n")
	for _, want := range []string{"APP_HOME=/srv/app", "MODE=prod", "PATH="} {
		if !strings.Contains(env, want) {
			t.Errorf("Env %v lacks %s", cfg.Env, want)
		}
	}
	if strings.Join(cfg.Entrypoint, " ") != "/usr/local/bin/run" || strings.Join(cfg.Cmd, " ") != "--serve" {
		t.Errorf("Entrypoint %q Cmd %q", cfg.Entrypoint, cfg.Cmd)
	}
	if cfg.WorkingDir != "/srv/app" {
		t.Errorf("WorkingDir %q", cfg.WorkingDir)
	}
	if cfg.Labels["org.example.team"] != "core" || cfg.Labels["version"] != "1.0" {
		t.Errorf("Labels %v", cfg.Labels)
	}
	if _, ok := cfg.ExposedPorts["8080/tcp"]; !ok || len(cfg.ExposedPorts) != 1 {
		t.Errorf("ExposedPorts %v", cfg.ExposedPorts)
	}
	nonEmpty := 0
	for _, h := range c.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if c.RootFS.Type != "layers" || nonEmpty != len(c.RootFS.DiffIDs) {
		t.Errorf("rootfs %s with %d diff_ids, %d non-empty history entries", c.RootFS.Type, len(c.RootFS.DiffIDs), nonEmpty)
	}
}

func checkMultiStageRootfs(t *testing.T, rootfs string) {
	t.Helper()
	checkFile(t, rootfs, "srv/app/src/app.js", "console.log(1)\n", 0o644, 1000, 1000)
	checkFile(t, rootfs, "srv/app/src/lib.js", "module.exports = 2\n", 0o644, 1000, 1000)
	checkFile(t, rootfs, "srv/app/src", "", 0o755, 1000, 1000)
	checkFile(t, rootfs, "srv/app/package.json", `{"name":"app"}`, 0o644, 0, 0)
	checkFile(t, rootfs, "usr/local/bin/run", "#!/bin/sh\necho run\n", 0o755, 0, 0)
	if _, err := os.Stat(filepath.Join(rootfs, "app")); err == nil {
		t.Errorf("/app of the build stage leaked into the final image")
	}
	if _, err := os.Stat(filepath.Join(rootfs, "bin", "busybox")); err != nil {
		t.Errorf("base image files missing: %v", err)
	}
}

func TestOutputOCIArchiveMultiStage(t *testing.T) {
	testenv.RequireTools(t, "skopeo", "umoci", "tar")
	e := newEnv(t)
	ctx := multiStageProject(e)
	dest := filepath.Join(e.dir, "x.tar")
	iid := filepath.Join(e.dir, "iid")
	e.build("-t", "example.com/team/app:1.0", "--iidfile", iid, "-o", "type=oci,dest="+dest, ctx)

	if d := inspectDigest(t, "oci-archive:"+dest); d != readFile(t, iid) {
		t.Errorf("skopeo digest %s, --iidfile %s", d, readFile(t, iid))
	}
	var cfg imageConfig
	skopeoJSON(t, &cfg, "inspect", "--config", "oci-archive:"+dest)
	checkMultiStageConfig(t, cfg)

	layout := filepath.Join(e.dir, "layout")
	untar(t, dest, layout)
	var idx struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(layout, "index.json"))), &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests", len(idx.Manifests))
	}
	m := idx.Manifests[0]
	if m.Annotations["org.opencontainers.image.ref.name"] != "1.0" ||
		m.Annotations["io.containerd.image.name"] != "example.com/team/app:1.0" ||
		m.Digest != readFile(t, iid) {
		t.Errorf("index.json entry %+v", m)
	}
	if _, err := os.Stat(filepath.Join(layout, "oci-layout")); err != nil {
		t.Error(err)
	}
	checkMultiStageRootfs(t, umociUnpack(t, layout, "1.0"))

	// The same build again is all CACHED and the archive is byte-identical.
	dest2 := filepath.Join(e.dir, "y.tar")
	r := e.build("-t", "example.com/team/app:1.0", "-o", "type=oci,dest="+dest2, ctx)
	for name, st := range stepStates(r.out) {
		if st == "MISS" {
			t.Errorf("rebuild: %s missed", name)
		}
	}
	if readFile(t, dest) != readFile(t, dest2) {
		t.Errorf("rebuilt OCI archive differs from the first")
	}
}

func TestOutputDockerArchive(t *testing.T) {
	testenv.RequireTools(t, "skopeo", "tar")
	e := newEnv(t)
	ctx := multiStageProject(e)
	dest := filepath.Join(e.dir, "x.tar")
	iid := filepath.Join(e.dir, "iid")
	e.build("-t", "app:1.0", "-t", "127.0.0.1:5000/app:latest", "--iidfile", iid, "-o", "type=docker,dest="+dest, ctx)

	entries := tarNames(t, dest)
	dir := filepath.Join(e.dir, "x")
	untar(t, dest, dir)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "manifest.json"))), &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(manifest) != 1 {
		t.Fatalf("manifest.json has %d entries", len(manifest))
	}
	m := manifest[0]
	if strings.Join(m.RepoTags, ",") != "app:1.0,127.0.0.1:5000/app:latest" {
		t.Errorf("RepoTags %q", m.RepoTags)
	}
	for _, p := range append([]string{m.Config}, m.Layers...) {
		if _, ok := entries[p]; !ok {
			t.Errorf("manifest.json names %s, not in the tar", p)
		}
	}
	// docker load checks each layer file against the config's diff_ids: the sha256 of the
	// uncompressed tar.
	var cfg imageConfig
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, m.Config))), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) || len(m.Layers) < 2 {
		t.Fatalf("%d diff_ids, %d layers", len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	for i, l := range m.Layers {
		if got := uncompressedDigest(t, filepath.Join(dir, l)); got != cfg.RootFS.DiffIDs[i] {
			t.Errorf("layer %d (%s): uncompressed sha256 %s, diff_id %s", i, l, got, cfg.RootFS.DiffIDs[i])
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, "repositories")); err == nil {
		var repos map[string]map[string]string
		if err := json.Unmarshal(data, &repos); err != nil {
			t.Errorf("repositories: %v", err)
		} else if repos["app"]["1.0"] == "" {
			t.Errorf("repositories %v lacks app:1.0", repos)
		}
	} else {
		t.Errorf("repositories: %v", err)
	}
	checkMultiStageConfig(t, cfg)
	var info struct {
		RepoTags []string
		Labels   map[string]string
	}
	skopeoJSON(t, &info, "inspect", "docker-archive:"+dest)
	if info.Labels["org.example.team"] != "core" {
		t.Errorf("skopeo inspect docker-archive: labels %v", info.Labels)
	}
	// The docker archive holds the same config as the image the build produced.
	var cfg2 imageConfig
	skopeoJSON(t, &cfg2, "inspect", "--config", "docker-archive:"+dest)
	if strings.Join(cfg2.RootFS.DiffIDs, ",") != strings.Join(cfg.RootFS.DiffIDs, ",") {
		t.Errorf("skopeo config diff_ids differ from manifest.json's config")
	}
}

func TestOutputPushAgreesWithMetadata(t *testing.T) {
	testenv.RequireTools(t, "skopeo")
	e := newEnv(t)
	ctx := multiStageProject(e)
	ref := testReg.Addr() + "/e2e/pushed:v1"
	md := filepath.Join(e.dir, "md.json")
	r := e.build("--push", "-t", ref, "--metadata-file", md, ctx)
	var meta map[string]any
	if err := json.Unmarshal([]byte(readFile(t, md)), &meta); err != nil {
		t.Fatalf("--metadata-file: %v", err)
	}
	want, _ := meta["containerimage.digest"].(string)
	if !strings.HasPrefix(want, "sha256:") {
		t.Fatalf("metadata %v", meta)
	}
	if got := inspectDigest(t, "--tls-verify=false", "docker://"+ref); got != want {
		t.Errorf("registry has %s, metadata says %s\n%s", got, want, r.out)
	}
	var cfg imageConfig
	skopeoJSON(t, &cfg, "inspect", "--config", "--tls-verify=false", "docker://"+ref)
	checkMultiStageConfig(t, cfg)
	// The pushed image is a full copy: skopeo can pull every blob and umoci unpacks it.
	layout := filepath.Join(e.dir, "pulled")
	if err := testenv.Skopeo("copy", "--quiet", "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":v1"); err != nil {
		t.Fatal(err)
	}
	checkMultiStageRootfs(t, umociUnpack(t, layout, "v1"))

	// -o type=registry is the same as --push.
	ref2 := testReg.Addr() + "/e2e/pushed:v2"
	e.build("-o", "type=registry", "-t", ref2, ctx)
	if got := inspectDigest(t, "--tls-verify=false", "docker://"+ref2); got != want {
		t.Errorf("type=registry pushed %s, want %s", got, want)
	}
}

func TestOutputOCIDirAndLocal(t *testing.T) {
	testenv.RequireTools(t, "skopeo", "umoci")
	e := newEnv(t)
	ctx := multiStageProject(e)
	ociDir := filepath.Join(e.dir, "oci")
	local := filepath.Join(e.dir, "local")
	iid := filepath.Join(e.dir, "iid")
	e.build("-t", "app:2", "--iidfile", iid, "-o", "type=oci,dest="+ociDir+",tar=false", "-o", "type=local,dest="+local, ctx)

	if d := inspectDigest(t, "oci:"+ociDir+":2"); d != readFile(t, iid) {
		t.Errorf("oci dir digest %s, want %s", d, readFile(t, iid))
	}
	checkMultiStageRootfs(t, umociUnpack(t, ociDir, "2"))

	// type=local is the final filesystem: content and modes (owners are the builder's, as buildx).
	for p, want := range map[string]string{
		"srv/app/src/app.js":   "console.log(1)\n",
		"srv/app/package.json": `{"name":"app"}`,
		"usr/local/bin/run":    "#!/bin/sh\necho run\n",
	} {
		if got := readFile(t, filepath.Join(local, p)); got != want {
			t.Errorf("local %s: %q, want %q", p, got, want)
		}
	}
	if st, err := os.Stat(filepath.Join(local, "usr/local/bin/run")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("local run: %v %v", st, err)
	}
	if st, err := os.Stat(filepath.Join(local, "srv/app/src/lib.js")); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("local lib.js: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(local, "bin/busybox")); err != nil {
		t.Errorf("local output lacks the base image's files: %v", err)
	}
	if _, err := os.Stat(filepath.Join(local, "app")); err == nil {
		t.Errorf("local output has the build stage's /app")
	}
}

func TestStoreImagesRmiDuPrune(t *testing.T) {
	e := newEnv(t)
	ctx := multiStageProject(e)
	iid := filepath.Join(e.dir, "iid")
	e.build("-t", "myapp:1", "--iidfile", iid, ctx)
	digest := readFile(t, iid)

	r := e.run("images")
	if r.err != nil || !strings.Contains(r.out, "docker.io/library/myapp:1") && !strings.Contains(r.out, "myapp:1") {
		t.Fatalf("images: %v\n%s", r.err, r.out)
	}
	if !strings.Contains(r.out, strings.TrimPrefix(digest, "sha256:")[:12]) {
		t.Errorf("images does not show digest %s:\n%s", digest, r.out)
	}

	// A later build uses the tag without a registry: point FROM at it after the registry copy is gone
	// from reach (its address is not used at all).
	child := e.project("child", map[string]string{
		"Dockerfile": "FROM myapp:1\nCOPY extra.txt /extra.txt\nLABEL child=yes\n",
		"extra.txt":  "extra\n",
	})
	cid := filepath.Join(e.dir, "cid")
	out := filepath.Join(e.dir, "child-local")
	child1 := filepath.Join(e.dir, "child1.tar")
	e.build("-t", "child:1", "--iidfile", cid, "-o", "type=image", "-o", "type=local,dest="+out, "-o", "type=oci,dest="+child1, child)
	if got := readFile(t, filepath.Join(out, "srv/app/src/app.js")); got != "console.log(1)\n" {
		t.Errorf("child build lacks the parent's files: %q", got)
	}

	// An untagged, unrelated image: its blobs must go on prune.
	other := e.project("other", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY big.bin /big.bin\n",
		"big.bin":    strings.Repeat("unique content for prune\n", 4000),
	})
	oid := filepath.Join(e.dir, "oid")
	e.build("--iidfile", oid, other)

	du := e.run("du")
	if du.err != nil || !strings.Contains(du.out, "SIZE") {
		t.Fatalf("du: %v\n%s", du.err, du.out)
	}

	// rmi removes only the name.
	r = e.run("rmi", "child:1")
	if r.err != nil || !strings.Contains(r.out, "Untagged") {
		t.Fatalf("rmi: %v\n%s", r.err, r.out)
	}
	r = e.run("images")
	if strings.Contains(r.out, "child:1") || !strings.Contains(r.out, "myapp:1") {
		t.Errorf("after rmi child:1:\n%s", r.out)
	}
	if r := e.run("rmi", "nosuch:1"); r.err == nil {
		t.Errorf("rmi of a missing tag succeeded:\n%s", r.out)
	}

	r = e.run("prune")
	if r.err != nil || !strings.Contains(r.out, "reclaimed") {
		t.Fatalf("prune: %v\n%s", r.err, r.out)
	}
	du2 := e.run("du")
	if du2.out == du.out {
		t.Errorf("du unchanged by prune:\n%s", du2.out)
	}
	// The untagged images' blobs are gone; the tagged image's manifest is still there.
	blobs := storeBlobs(t, e.root)
	if blobs[strings.TrimPrefix(readFile(t, oid), "sha256:")] {
		t.Errorf("untagged image manifest %s survived prune", readFile(t, oid))
	}
	if blobs[strings.TrimPrefix(readFile(t, cid), "sha256:")] {
		t.Errorf("untagged (rmi'd) image manifest %s survived prune", readFile(t, cid))
	}
	if !blobs[strings.TrimPrefix(digest, "sha256:")] {
		t.Errorf("tagged image manifest %s removed by prune", digest)
	}
	// The tagged image still builds FROM, and the result is complete. The cache is gone, so the
	// steps run again (new history timestamps, so a new digest, as with docker) but every layer is
	// the same.
	out2 := filepath.Join(e.dir, "child-local-2")
	child2 := filepath.Join(e.dir, "child2.tar")
	e.build("-o", "type=local,dest="+out2, "-o", "type=oci,dest="+child2, child)
	if got := readFile(t, filepath.Join(out2, "extra.txt")); got != "extra\n" {
		t.Errorf("after prune: extra.txt %q", got)
	}
	if got := readFile(t, filepath.Join(out2, "srv/app/src/lib.js")); got != "module.exports = 2\n" {
		t.Errorf("after prune: lib.js %q", got)
	}
	var c1, c2 imageConfig
	skopeoJSON(t, &c1, "inspect", "--config", "oci-archive:"+child1)
	skopeoJSON(t, &c2, "inspect", "--config", "oci-archive:"+child2)
	if a, b := strings.Join(c1.RootFS.DiffIDs, ","), strings.Join(c2.RootFS.DiffIDs, ","); a != b {
		t.Errorf("after prune the child's layers differ:\n%s\n%s", a, b)
	}
	if c2.Config.Labels["child"] != "yes" || c2.Config.Labels["org.example.team"] != "core" {
		t.Errorf("after prune: labels %v", c2.Config.Labels)
	}
	if !storeBlobs(t, e.root)[strings.TrimPrefix(digest, "sha256:")] {
		t.Errorf("tagged manifest gone after the post-prune build")
	}
}

// storeBlobs returns the hex digests of the blobs in a store (ROOT/blobs/sha256).
func storeBlobs(t *testing.T, root string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "blobs", "sha256"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("no blobs under %s (layout changed?): %v", root, err)
	}
	blobs := map[string]bool{}
	for _, e := range ents {
		blobs[e.Name()] = true
	}
	return blobs
}

// uncompressedDigest is the sha256 of a layer file after gunzip (if it is gzipped).
func uncompressedDigest(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil))
}
