package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Follows dockerfile2llb's dispatchRunMounts and BuildKit's cache mount manager
// (solver/llbsolver/mounts: a cache with an input is keyed id:ref and created on top of it): a
// new cache mount with from=stage,source=P starts as a copy of P in that stage, mode and owner
// included; later steps with the same id and seed see what earlier ones left; a cache with the
// same id but no from= is another cache; a changed seed starts a new cache and re-runs the step.
func TestParityCacheMountFrom(t *testing.T) {
	e := newEnv(t)
	seedStage := func(content string) string {
		return "FROM {{BASE}} AS seed\nRUN mkdir -p /seed/sub && echo " + content + " > /seed/sub/f && chown -R 1234:5678 /seed && chmod 0750 /seed\n"
	}
	steps := `FROM {{BASE}}
RUN --mount=type=cache,id=c,from=seed,source=/seed,target=/x cat /x/sub/f > /got && stat -c '%u:%g %a' /x > /got-stat && echo added > /x/new
RUN --mount=type=cache,id=c,from=seed,source=seed,target=/y cat /y/new > /got2
RUN --mount=type=cache,id=c,target=/z ls -A /z > /got3
RUN --mount=type=cache,from=seed,source=/seed/sub/f,target=/file cat /file > /got4
`
	ctx := e.project("cachefrom", map[string]string{"Dockerfile": seedStage("s1") + steps})
	out := filepath.Join(e.dir, "out")
	e.build("-o", "type=local,dest="+out, ctx)
	for f, want := range map[string]string{"got": "s1\n", "got-stat": "1234:5678 750\n", "got2": "added\n", "got3": "", "got4": "s1\n"} {
		if got := readFile(t, filepath.Join(out, f)); got != want {
			t.Errorf("/%s: %q, want %q", f, got, want)
		}
	}

	if r := e.build(ctx); len(missed(r.out)) != 0 {
		t.Errorf("unchanged rebuild missed %v:\n%s", missed(r.out), r.out)
	}

	// The seed is part of what the step reads: a new seed re-runs it on a new cache.
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(strings.ReplaceAll(seedStage("s2")+steps, "{{BASE}}", baseRef)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.build("-o", "type=local,dest="+out, ctx)
	if reason := missReason(r.out, "target=/x cat"); reason == "" {
		t.Errorf("a changed seed did not re-run the step:\n%s", r.out)
	}
	for f, want := range map[string]string{"got": "s2\n", "got4": "s2\n"} {
		if got := readFile(t, filepath.Join(out, f)); got != want {
			t.Errorf("after the seed changed, /%s: %q, want %q", f, got, want)
		}
	}

	// Like BuildKit, a source missing from the stage fails the step.
	ctx = e.project("cachefrom-missing", map[string]string{"Dockerfile": seedStage("s1") +
		"FROM {{BASE}}\nRUN --mount=type=cache,from=seed,source=/nothere,target=/x true\n"})
	if r := e.buildFail(ctx); !r.has("not found") {
		t.Errorf("missing seed source:\n%s", r.out)
	}
}

// BuildKit leaves no_new_privs off (executor/oci.WithNewPrivileges), so a setuid-root binary run
// by a non-root USER in a RUN step runs with euid 0, as sudo and su need.
func TestParitySetuidAsNonRootUser(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("setuid", map[string]string{
		"Dockerfile": `FROM {{BASE}}
COPY --chmod=4755 euid /usr/local/bin/euid
COPY --chmod=0755 euid /usr/local/bin/euid-plain
USER 1000:1000
RUN euid > /tmp/setuid && euid-plain > /tmp/plain && id -u > /tmp/uid
`,
		"euid.go": "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() { fmt.Println(os.Geteuid()) }\n",
	})
	cmd := exec.Command("go", "build", "-o", filepath.Join(ctx, "euid"), filepath.Join(ctx, "euid.go"))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	cmd.Dir = ctx
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the euid probe: %v\n%s", err, b)
	}
	out := filepath.Join(e.dir, "out")
	e.build("-o", "type=local,dest="+out, ctx)
	for f, want := range map[string]string{"tmp/setuid": "0\n", "tmp/plain": "1000\n", "tmp/uid": "1000\n"} {
		if got := readFile(t, filepath.Join(out, f)); got != want {
			t.Errorf("/%s: %q, want %q", f, got, want)
		}
	}
}
