package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/binfmt"
	"github.com/strata-build/strata/internal/testenv"
)

var arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64"}

var (
	multiOnce sync.Once
	multiRef  string // ADDR/busybox-multi:latest, an index of linux/amd64 and linux/arm64
	multiErr  error
)

// multiBase pushes (once) the two-platform busybox index built from Debian's busybox-static for
// amd64 and arm64, skipping the test when the arm64 package cannot be had.
func multiBase(t *testing.T) string {
	t.Helper()
	testenv.RequireTools(t, "skopeo", "dpkg-deb", "apt-get")
	multiOnce.Do(func() { multiRef, multiErr = testenv.PushBusyboxIndex(testReg, "busybox-multi:latest") })
	if multiErr != nil {
		t.Skipf("no arm64 busybox image (hack/deps adds the arm64 architecture and downloads busybox-static:arm64): %v", multiErr)
	}
	return multiRef
}

// requireEmulation skips unless arm64 binaries run here (qemu-user-static's binfmt handler).
func requireEmulation(t *testing.T) {
	t.Helper()
	if err := binfmt.Check(arm64); err != nil {
		t.Skipf("arm64 emulation unavailable (hack/deps installs qemu-user-static): %v", err)
	}
}

func (e *env) multiProject(name string, files map[string]string) string {
	e.t.Helper()
	ref := multiBase(e.t)
	for k, v := range files {
		files[k] = strings.ReplaceAll(v, "{{MULTI}}", ref)
	}
	return e.project(name, files)
}

// A foreign platform: the base is picked from the index for arm64, RUN runs under QEMU, the
// predefined args name the target, and the config says arm64.
func TestPlatformSingleForeign(t *testing.T) {
	requireEmulation(t)
	e := newEnv(t)
	ctx := e.multiProject("arm", map[string]string{"Dockerfile": `FROM {{MULTI}}
ARG TARGETARCH TARGETPLATFORM BUILDARCH
RUN uname -m > /arch && echo "$TARGETARCH $TARGETPLATFORM $BUILDARCH" > /args
`})
	out := filepath.Join(e.dir, "out")
	arc := filepath.Join(e.dir, "arm.tar")
	e.build("--platform", "linux/arm64", "-o", "type=local,dest="+out, "-o", "type=oci,dest="+arc, ctx)
	if got := readFile(t, filepath.Join(out, "arch")); got != "aarch64\n" {
		t.Errorf("/arch = %q, want aarch64", got)
	}
	if got := readFile(t, filepath.Join(out, "args")); got != "arm64 linux/arm64 amd64\n" {
		t.Errorf("/args = %q", got)
	}
	var cfg ocispec.Image
	skopeoJSON(t, &cfg, "inspect", "--config", "oci-archive:"+arc)
	if cfg.OS != "linux" || cfg.Architecture != "arm64" {
		t.Errorf("config platform %s/%s, want linux/arm64", cfg.OS, cfg.Architecture)
	}
	// Rebuilding is all cached.
	r := e.build("--platform", "linux/arm64", ctx)
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("rebuild missed %v\n%s", m, r.out)
	}
}

// Without the QEMU handler a foreign RUN fails on its line, naming the platform and the package.
func TestPlatformMissingEmulator(t *testing.T) {
	e := newEnv(t)
	ctx := e.multiProject("noqemu", map[string]string{"Dockerfile": "FROM {{MULTI}}\nRUN uname -m > /arch\n"})
	empty := filepath.Join(e.dir, "binfmt")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	r := e.runIn("", []string{binfmt.EnvDir + "=" + empty}, "build", "--progress=plain", "--platform", "linux/arm64", ctx)
	if r.err == nil {
		t.Fatalf("build succeeded without an arm64 emulator\n%s", r.out)
	}
	line := errLine(t, r.out)
	for _, w := range []string{"Dockerfile:2", "linux/arm64", "apt-get install qemu-user-static"} {
		if !strings.Contains(line, w) {
			t.Errorf("error line lacks %q: %s\n%s", w, line, r.out)
		}
	}
}

// Two platforms make one index (OCI archive, registry, local store; --iidfile names it); each
// image is its platform's;
// the FROM --platform=$BUILDPLATFORM stage runs once and feeds both; a rebuild is all cached; and
// the same RUN on the same files misses for each platform (keys name the platform).
func TestPlatformIndexAndSharedBuildStage(t *testing.T) {
	requireEmulation(t)
	e := newEnv(t)
	ctx := e.multiProject("multi", map[string]string{"Dockerfile": `FROM --platform=$BUILDPLATFORM {{MULTI}} AS build
ARG BUILDPLATFORM
RUN echo "compiled on $(uname -m)" > /out
FROM {{MULTI}}
ARG TARGETARCH
COPY --from=build /out /out
RUN uname -m > /arch && echo $TARGETARCH > /targetarch
FROM scratch AS same
COPY --from=build / /
RUN echo same > /same
FROM same AS final
COPY --from=1 /arch /targetarch /out /
`})
	arc := filepath.Join(e.dir, "multi.tar")
	local := filepath.Join(e.dir, "local")
	ref := testReg.Addr() + "/strata-multi/app:1"
	iid := filepath.Join(e.dir, "iid")
	layoutDir := filepath.Join(e.dir, "layoutdir")
	r := e.build("--platform", "linux/amd64,linux/arm64", "-t", ref, "--push", "--iidfile", iid, "-o", "type=oci,dest="+arc, "-o", "type=local,dest="+local, "-o", "type=oci,dest="+layoutDir+",tar=false", "-o", "type=image", ctx)

	states := stepStates(r.out)
	// The build stage: its RUN misses once (linux/amd64) and is a hit for arm64's copy of it.
	buildRuns := 0
	for name, st := range states {
		if strings.Contains(name, "RUN echo \"compiled on") {
			if st == "MISS" {
				buildRuns++
			}
			if !strings.HasPrefix(name, "[linux/amd64") {
				t.Errorf("build stage step not on the build platform: %s", name)
			}
		}
	}
	if buildRuns != 1 {
		t.Errorf("build stage RUN ran %d times, want 1\n%s", buildRuns, r.out)
	}
	// Same text, same parent files (the amd64 build stage's), two platforms: two misses.
	for _, label := range []string{"[linux/amd64 same 3/3] RUN echo same > /same", "[linux/arm64 same 3/3] RUN echo same > /same"} {
		if states[label] != "MISS" {
			t.Errorf("%s: %q, want MISS (keys must name the platform)\n%s", label, states[label], r.out)
		}
	}

	// The registry holds an index of two platform images.
	var idx ocispec.Index
	skopeoJSON(t, &idx, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	if idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 2 {
		t.Fatalf("pushed %s with %d manifests, want an index of 2", idx.MediaType, len(idx.Manifests))
	}
	for i, want := range []string{"amd64", "arm64"} {
		m := idx.Manifests[i]
		if m.Platform == nil || m.Platform.OS != "linux" || m.Platform.Architecture != want {
			t.Errorf("index entry %d platform %+v, want linux/%s", i, m.Platform, want)
		}
		var cfg ocispec.Image
		skopeoJSON(t, &cfg, "inspect", "--config", "--tls-verify=false", "docker://"+testReg.Addr()+"/strata-multi/app@"+m.Digest.String())
		if cfg.Architecture != want || cfg.OS != "linux" {
			t.Errorf("%s config platform %s/%s", want, cfg.OS, cfg.Architecture)
		}
	}

	// Each platform's files, from the local output and from the OCI archive (umoci unpack).
	uname := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}
	for _, arch := range []string{"amd64", "arm64"} {
		dir := filepath.Join(local, "linux_"+arch)
		if got := readFile(t, filepath.Join(dir, "arch")); got != uname[arch]+"\n" {
			t.Errorf("%s /arch = %q", arch, got)
		}
		if got := readFile(t, filepath.Join(dir, "targetarch")); got != arch+"\n" {
			t.Errorf("%s /targetarch = %q", arch, got)
		}
		if got := readFile(t, filepath.Join(dir, "out")); got != "compiled on x86_64\n" {
			t.Errorf("%s /out = %q (the build stage runs on the build platform)", arch, got)
		}
	}
	var top ocispec.Index
	untar(t, arc, filepath.Join(e.dir, "layout"))
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(e.dir, "layout", "index.json"))), &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 || top.Manifests[0].MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("oci archive index.json: %+v", top.Manifests)
	}
	var inner ocispec.Index
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(e.dir, "layout", "blobs", "sha256", top.Manifests[0].Digest.Encoded()))), &inner); err != nil {
		t.Fatal(err)
	}
	if len(inner.Manifests) != 2 || inner.Manifests[1].Platform == nil || inner.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("oci archive's image index: %+v", inner.Manifests)
	}
	if inner.Manifests[0].Digest != idx.Manifests[0].Digest || inner.Manifests[1].Digest != idx.Manifests[1].Digest {
		t.Errorf("archive and registry differ: %v vs %v", inner.Manifests, idx.Manifests)
	}

	// The OCI layout directory holds the same index, tagged, which skopeo reads.
	var fromLayout ocispec.Index
	skopeoJSON(t, &fromLayout, "inspect", "--raw", "oci:"+layoutDir+":1")
	if len(fromLayout.Manifests) != 2 || fromLayout.Manifests[1].Digest != idx.Manifests[1].Digest {
		t.Errorf("layout index %+v, registry %+v", fromLayout.Manifests, idx.Manifests)
	}
	var armCfg ocispec.Image
	skopeoJSON(t, &armCfg, "inspect", "--config", "--override-arch", "arm64", "oci:"+layoutDir+":1")
	if armCfg.Architecture != "arm64" {
		t.Errorf("skopeo picked %s for arm64 from the layout", armCfg.Architecture)
	}

	// A docker archive holds one platform: refused before anything runs.
	bad := e.buildFail("--platform", "linux/amd64,linux/arm64", "-o", "type=docker,dest="+filepath.Join(e.dir, "d.tar"), ctx)
	if line := errLine(t, bad.out); !strings.Contains(line, "type=docker") || strings.Contains(bad.out, "RUN") {
		t.Errorf("type=docker with two platforms: %s\n%s", line, bad.out)
	}

	// A rebuild is all cached and gives the same index.
	iid2 := filepath.Join(e.dir, "iid2")
	r2 := e.build("--platform", "linux/amd64,linux/arm64", "-t", ref, "--iidfile", iid2, "-o", "type=image", ctx)
	if m := missed(r2.out); len(m) > 0 {
		t.Errorf("rebuild missed %v\n%s", m, r2.out)
	}
	if a, b := readFile(t, iid), readFile(t, iid2); a != b || a != top.Manifests[0].Digest.String() {
		t.Errorf("index digests: first %s, rebuild %s, archive %s", a, b, top.Manifests[0].Digest)
	}
	// --no-cache reruns everything, the build stage still once.
	nc := e.build("--platform", "linux/amd64,linux/arm64", "--no-cache", ctx)
	ran := 0
	for name, st := range stepStates(nc.out) {
		if strings.Contains(name, "RUN echo \"compiled on") && st == "MISS" {
			ran++
		}
	}
	if ran != 1 {
		t.Errorf("--no-cache: build stage RUN ran %d times, want 1\n%s", ran, nc.out)
	}

	if out := e.run("images"); out.err != nil || !strings.Contains(out.out, "strata-multi/app:1") || strings.Contains(out.out, "?") {
		t.Errorf("strata images with an index tag: %v\n%s", out.err, out.out)
	}
	// Pruning everything else keeps every platform's image of the tagged index.
	if out := e.run("prune", "--all"); out.err != nil {
		t.Fatalf("prune --all: %v\n%s", out.err, out.out)
	}
	if out := e.run("store", "verify"); out.err != nil {
		t.Errorf("store verify after a multi-platform build: %v\n%s", out.err, out.out)
	}
}

// Bases for another platform, as BuildKit treats them: an index without the platform is an error
// on the FROM line naming what the index has; a single-platform image of another platform is
// used, with BuildKit's InvalidBaseImagePlatform warning.
func TestPlatformBaseMismatch(t *testing.T) {
	e := newEnv(t)
	ctx := e.multiProject("riscv", map[string]string{"Dockerfile": "FROM {{MULTI}}\nCOPY a.txt /\n", "a.txt": "a\n"})
	r := e.buildFail("--platform", "linux/riscv64", ctx)
	line := errLine(t, r.out)
	for _, w := range []string{"Dockerfile:1", "no image for platform linux/riscv64", "linux/amd64, linux/arm64"} {
		if !strings.Contains(line, w) {
			t.Errorf("error line lacks %q: %s\n%s", w, line, r.out)
		}
	}

	ctx = e.project("single", map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY a.txt /\n", "a.txt": "a\n"})
	arc := filepath.Join(e.dir, "single.tar")
	r = e.build("--platform", "linux/arm64", "-o", "type=oci,dest="+arc, ctx)
	if want := `Dockerfile:1: InvalidBaseImagePlatform: Base image ` + baseRef + ` was pulled with platform "linux/amd64", expected "linux/arm64" for current build`; !r.has(want) {
		t.Errorf("no warning %q\n%s", want, r.out)
	}
	var cfg ocispec.Image
	skopeoJSON(t, &cfg, "inspect", "--config", "oci-archive:"+arc)
	if cfg.Architecture != "arm64" {
		t.Errorf("config architecture %q, want the requested arm64 (as BuildKit sets it)", cfg.Architecture)
	}
}

// A cache exported by a two-platform build serves both platforms on a fresh runner, each its
// own records: the arm64 output still says aarch64.
func TestPlatformCacheTravels(t *testing.T) {
	requireEmulation(t)
	e := newEnv(t)
	ctx := e.multiProject("travel", map[string]string{"Dockerfile": "FROM {{MULTI}}\nRUN uname -m > /arch\n"})
	cache := filepath.Join(e.dir, "cache")
	e.build("--platform", "linux/amd64,linux/arm64", "--cache-to", "type=local,dest="+cache+",mode=max", ctx)

	fresh := newEnv(t)
	out := filepath.Join(fresh.dir, "out")
	r := fresh.build("--platform", "linux/amd64,linux/arm64", "--cache-from", "type=local,src="+cache, "-o", "type=local,dest="+out, ctx)
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("fresh runner missed %v\n%s", m, r.out)
	}
	for arch, want := range map[string]string{"amd64": "x86_64\n", "arm64": "aarch64\n"} {
		if got := readFile(t, filepath.Join(out, "linux_"+arch, "arch")); got != want {
			t.Errorf("%s /arch from the cache = %q, want %q", arch, got, want)
		}
	}
}

// A platform with a variant: linux/arm/v7 picks the arm/v7 entry of the index, runs under
// qemu-arm, sees TARGETVARIANT=v7, and the config and index entry carry the variant.
func TestPlatformArmV7Variant(t *testing.T) {
	armv7 := ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	if err := binfmt.Check(armv7); err != nil {
		t.Skipf("arm/v7 emulation unavailable (qemu-user-static): %v", err)
	}
	testenv.RequireTools(t, "skopeo", "dpkg-deb", "apt-get")
	ref, err := testenv.PushBusyboxPlatforms(testReg, "busybox-armv7:latest", ocispec.Platform{OS: "linux", Architecture: "amd64"}, armv7)
	if err != nil {
		t.Skipf("no armhf busybox image (dpkg --add-architecture armhf && apt-get update): %v", err)
	}
	e := newEnv(t)
	ctx := e.project("armv7", map[string]string{"Dockerfile": "FROM " + ref + "\nARG TARGETVARIANT TARGETPLATFORM\nRUN uname -m > /arch && echo $TARGETVARIANT $TARGETPLATFORM > /args\n"})
	out := filepath.Join(e.dir, "out")
	arc := filepath.Join(e.dir, "v7.tar")
	e.build("--platform", "linux/arm", "-o", "type=local,dest="+out, "-o", "type=oci,dest="+arc, ctx)
	if got := readFile(t, filepath.Join(out, "arch")); got != "armv7l\n" {
		t.Errorf("/arch = %q, want armv7l", got)
	}
	if got := readFile(t, filepath.Join(out, "args")); got != "v7 linux/arm/v7\n" {
		t.Errorf("/args = %q", got)
	}
	var cfg ocispec.Image
	skopeoJSON(t, &cfg, "inspect", "--config", "oci-archive:"+arc)
	if cfg.Architecture != "arm" || cfg.Variant != "v7" {
		t.Errorf("config %s/%s, want arm/v7", cfg.Architecture, cfg.Variant)
	}
}

// An inline cache on a pushed index: each platform's config carries its records, and a fresh
// runner's --cache-from the index reads them all.
func TestPlatformInlineCacheOnIndex(t *testing.T) {
	requireEmulation(t)
	e := newEnv(t)
	ctx := e.multiProject("inline", map[string]string{"Dockerfile": "FROM {{MULTI}}\nRUN uname -m > /arch\n"})
	ref := testReg.Addr() + "/strata-multi/inline:1"
	e.build("--platform", "linux/amd64,linux/arm64", "--cache-to", "type=inline", "-t", ref, "--push", ctx)

	fresh := newEnv(t)
	out := filepath.Join(fresh.dir, "out")
	r := fresh.build("--platform", "linux/amd64,linux/arm64", "--cache-from", ref, "-o", "type=local,dest="+out, ctx)
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("fresh runner missed %v\n%s", m, r.out)
	}
	if got := readFile(t, filepath.Join(out, "linux_arm64", "arch")); got != "aarch64\n" {
		t.Errorf("arm64 /arch from the inline cache = %q", got)
	}
}
