package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/testenv"
)

// The end-to-end tests drive the real binary against a real registry (Debian's docker-registry on
// a free loopback port) serving a busybox image made from Debian's busybox-static.
var (
	strataBin string
	testReg   *testenv.Registry
	baseRef   string // ADDR/busybox:latest
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "cmd/strata: end-to-end tests need root (overlayfs, runc); skipping")
		return 0
	}
	dir, err := os.MkdirTemp("", "strata-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	strataBin = filepath.Join(dir, "strata")
	if out, err := exec.Command("go", "build", "-o", strataBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build strata: %v\n%s", err, out)
		return 1
	}
	testReg, err = testenv.StartRegistry()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer testReg.Close()
	baseRef, err = testenv.PushBusybox(testReg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// env is one test's store and work dir.
type env struct {
	t    *testing.T
	root string // --root
	dir  string // scratch for contexts and outputs
}

func newEnv(t *testing.T) *env {
	t.Helper()
	d := t.TempDir()
	return &env{t: t, root: filepath.Join(d, "store"), dir: d}
}

// result is one strata run.
type result struct {
	out  string // stdout + stderr, interleaved
	err  error
	code int
}

// steps returns the progress lines "#N …" for a build.
func (r result) has(s string) bool { return strings.Contains(r.out, s) }

// run runs strata with --root set.
func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runIn("", nil, args...)
}

func (e *env) runIn(stdin string, extraEnv []string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(strataBin, append([]string{"--root", e.root}, args...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), extraEnv...)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return result{out: buf.String(), err: err, code: code}
}

// build runs `strata build --progress=plain ARGS` and fails the test if it fails.
func (e *env) build(args ...string) result {
	e.t.Helper()
	r := e.run(append([]string{"build", "--progress=plain"}, args...)...)
	if r.err != nil {
		e.t.Fatalf("strata build %v: %v\n%s", args, r.err, r.out)
	}
	return r
}

// buildFail runs a build that must fail and returns its output.
func (e *env) buildFail(args ...string) result {
	e.t.Helper()
	r := e.run(append([]string{"build", "--progress=plain"}, args...)...)
	if r.err == nil {
		e.t.Fatalf("strata build %v succeeded, want failure\n%s", args, r.out)
	}
	return r
}

// project writes files (path → content) under a new context dir; "{{BASE}}" becomes the busybox
// image reference.
func (e *env) project(name string, files map[string]string) string {
	e.t.Helper()
	dir := filepath.Join(e.dir, name)
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(strings.ReplaceAll(content, "{{BASE}}", baseRef)), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	return dir
}

var stepLine = regexp.MustCompile(`(?m)^#(\d+) (\[[^\]]+\] .*)$`)

// stepStates maps each step's display text (e.g. "[build 3/6] COPY . .") to "CACHED", "MISS" or
// "RAN" (ran without a miss line, e.g. FROM).
func stepStates(out string) map[string]string {
	ids := map[string]string{}
	for _, m := range stepLine.FindAllStringSubmatch(out, -1) {
		if !strings.HasPrefix(m[2], "[internal]") {
			ids[m[1]] = m[2]
		}
	}
	states := map[string]string{}
	for id, name := range ids {
		switch {
		case strings.Contains(out, "#"+id+" CACHED\n"):
			states[name] = "CACHED"
		case strings.Contains(out, "#"+id+" MISS:"):
			states[name] = "MISS"
		default:
			states[name] = "RAN"
		}
	}
	return states
}

// missed lists the steps that missed, by display text.
func missed(out string) []string {
	var m []string
	for name, st := range stepStates(out) {
		if st == "MISS" {
			m = append(m, name)
		}
	}
	return m
}

// missReason returns the reason printed for the step whose display text contains substr.
func missReason(out, substr string) string {
	ids := map[string]string{}
	for _, m := range stepLine.FindAllStringSubmatch(out, -1) {
		if strings.Contains(m[2], substr) {
			ids[m[1]] = m[2]
		}
	}
	for id := range ids {
		re := regexp.MustCompile(`(?m)^#` + id + ` MISS: (.*)$`)
		if m := re.FindStringSubmatch(out); m != nil {
			return m[1]
		}
	}
	return ""
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
