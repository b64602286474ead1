// Package conformance holds the Dockerfile conformance suite: each case in cases/*.txtar is a
// Dockerfile and its context, modelled on one of BuildKit v0.33.1's frontend integration tests,
// with the filesystem changes and image config BuildKit produces for it. The test builds every
// case with strata and compares. `-record` builds the cases with real BuildKit instead and writes
// what it produced into the cases (see docs/COMPATIBILITY.md).
package conformance

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/strata-build/strata/internal/testenv"
)

var (
	record    = flag.Bool("record", false, "build the cases with BuildKit (STRATA_BUILDKIT_BIN, default /var/cache/strata-bench/bin) and write its results into them")
	caseGlob  = flag.String("cases", "*", "glob of case names to run (without .txtar)")
	strataBin string
	reg       *testenv.Registry
	baseRef   string
	baseFS    map[string]entry
	bk        *buildkit
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "conformance: the suite needs root (overlayfs, runc, umoci owners); skipping")
		return 0
	}
	for _, tool := range []string{"umoci", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "conformance: %s is missing (hack/deps installs it)\n", tool)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "strata-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	strataBin = filepath.Join(dir, "strata")
	if out, err := exec.Command("go", "build", "-o", strataBin, "../../cmd/strata").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build strata: %v\n%s", err, out)
		return 1
	}
	if reg, err = testenv.StartRegistry(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer reg.Close()
	if baseRef, err = testenv.PushBusybox(reg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if baseFS, err = pullBase(dir); err != nil {
		fmt.Fprintln(os.Stderr, "conformance: base image:", err)
		return 1
	}
	if *record {
		if bk, err = startBuildKit(dir, reg.Addr()); err != nil {
			fmt.Fprintln(os.Stderr, "conformance:", err)
			return 1
		}
		defer bk.stop()
	}
	return m.Run()
}

// pullBase lists the base image as skopeo and umoci see it, independently of strata.
func pullBase(dir string) (map[string]entry, error) {
	layout := filepath.Join(dir, "base")
	if out, err := exec.Command("skopeo", "copy", "--src-tls-verify=false", "docker://"+baseRef, "oci:"+layout+":base").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("skopeo copy: %v\n%s", err, out)
	}
	rootfs := filepath.Join(dir, "base-rootfs")
	if out, err := exec.Command("umoci", "raw", "unpack", "--image", layout+":base", rootfs).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("umoci raw unpack: %v\n%s", err, out)
	}
	return scan(rootfs)
}

// testCase is one cases/NAME.txtar. The archive comment holds "key: value" lines: follows (the
// BuildKit test), feature (what docs/COMPATIBILITY.md lists it under), args (strata build flags),
// differs (why strata knowingly differs; then strata/fs and strata/config hold strata's result).
// Sections: setup (sh run in the context dir: modes, links), want/fs, want/config, want/fail
// (text strata's error must contain; BuildKit must fail too), strata/fs, strata/config, strata/fail
// (with differs: BuildKit builds it, strata knowingly refuses with an error containing this text);
// every other section is a context file ("Dockerfile" included).
type testCase struct {
	name, path string
	meta       map[string][]string
	ar         *txtar.Archive
	sections   map[string]string
}

func loadCase(path string) (*testCase, error) {
	ar, err := txtar.ParseFile(path)
	if err != nil {
		return nil, err
	}
	c := &testCase{
		name:     strings.TrimSuffix(filepath.Base(path), ".txtar"),
		path:     path,
		meta:     map[string][]string{},
		ar:       ar,
		sections: map[string]string{},
	}
	for _, line := range strings.Split(string(ar.Comment), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s: comment line %q is not key: value", path, line)
		}
		switch k = strings.TrimSpace(k); k {
		case "follows", "feature", "args", "differs", "note":
		default:
			return nil, fmt.Errorf("%s: unknown key %q", path, k)
		}
		c.meta[k] = append(c.meta[k], strings.TrimSpace(v))
	}
	if len(c.meta["follows"]) == 0 || len(c.meta["feature"]) == 0 {
		return nil, fmt.Errorf("%s: every case names the BuildKit test it follows and a feature", path)
	}
	for _, f := range ar.Files {
		if _, dup := c.sections[f.Name]; dup {
			return nil, fmt.Errorf("%s: section %s twice", path, f.Name)
		}
		c.sections[f.Name] = string(f.Data)
	}
	if _, ok := c.sections["Dockerfile"]; !ok && !strings.Contains(c.arg(), "-f") {
		return nil, fmt.Errorf("%s: no Dockerfile section", path)
	}
	return c, nil
}

func (c *testCase) arg() string { return strings.Join(c.meta["args"], " ") }

func (c *testCase) args(ctx string) []string {
	return strings.Fields(strings.ReplaceAll(c.arg(), "{{CTX}}", ctx))
}

// special sections are expectations and scripts, not context files.
func special(name string) bool {
	return name == "setup" || strings.HasPrefix(name, "want/") || strings.HasPrefix(name, "strata/")
}

// writeContext materialises the context under dir and runs the setup script there.
func (c *testCase) writeContext(dir string) error {
	for _, f := range c.ar.Files {
		if special(f.Name) {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		data := strings.ReplaceAll(string(f.Data), "{{BASE}}", baseRef)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return err
		}
	}
	if s, ok := c.sections["setup"]; ok {
		cmd := exec.Command("sh", "-ec", s)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("setup: %v\n%s", err, out)
		}
	}
	return nil
}

// outcome is what one builder produced for a case.
type outcome struct {
	fs, config string
	failed     bool
	log        string
}

// inspect reads a built OCI layout: the filesystem changes against the base, and the config.
func inspect(t *testing.T, layout string) outcome {
	t.Helper()
	cfg, layers, err := ociLayout{layout}.single("conf")
	if err != nil {
		t.Fatalf("read %s: %v", layout, err)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("umoci", "raw", "unpack", "--image", layout+":conf", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("umoci raw unpack: %v\n%s", err, out)
	}
	got, err := scan(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	summary, err := configSummary(cfg, layers)
	if err != nil {
		t.Fatal(err)
	}
	return outcome{fs: changes(baseFS, got), config: summary}
}

func buildStrata(t *testing.T, c *testCase, ctx string) outcome {
	t.Helper()
	layout := filepath.Join(t.TempDir(), "layout")
	args := []string{"--root", filepath.Join(t.TempDir(), "store"), "build", "--progress=plain",
		"-t", "conformance:1", "-o", "type=oci,tar=false,dest=" + layout}
	args = append(args, c.args(ctx)...)
	args = append(args, ctx)
	cmd := exec.Command(strataBin, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return outcome{failed: true, log: buf.String()}
	}
	o := inspect(t, layout)
	o.log = buf.String()
	return o
}

var (
	tallyMu sync.Mutex
	tally   = map[string][]string{} // "same" / "differs" / "failed" → case names
)

func count(kind, name string) {
	tallyMu.Lock()
	defer tallyMu.Unlock()
	tally[kind] = append(tally[kind], name)
}

func TestConformance(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("cases", *caseGlob+".txtar"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases match %q (%v)", *caseGlob, err)
	}
	t.Run("cases", func(t *testing.T) {
		for _, p := range paths {
			c, err := loadCase(p)
			if err != nil {
				t.Error(err)
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				runCase(t, c)
			})
		}
	})
	tallyMu.Lock()
	defer tallyMu.Unlock()
	for _, k := range []string{"differs", "failed"} {
		sort.Strings(tally[k])
	}
	summary := fmt.Sprintf("conformance: %d cases; %d as BuildKit, %d differ knowingly %v, %d fail %v",
		len(paths), len(tally["same"]), len(tally["differs"]), tally["differs"], len(tally["failed"]), tally["failed"])
	t.Log(summary)
	// hack/test prints this line: go test shows nothing of a passing package.
	_ = os.WriteFile(filepath.Join(os.TempDir(), "strata-conformance-summary.txt"), []byte(summary+"\n"), 0o644)
}

func runCase(t *testing.T, c *testCase) {
	ctx := filepath.Join(t.TempDir(), "ctx")
	if err := c.writeContext(ctx); err != nil {
		t.Fatal(err)
	}
	if *record {
		recordCase(t, c, ctx)
		return
	}
	got := buildStrata(t, c, ctx)
	ok := true
	want, fails := c.sections["want/fail"]
	if refusal, refuses := c.sections["strata/fail"]; refuses && len(c.meta["differs"]) > 0 {
		// BuildKit builds it, strata knowingly refuses (differs says why).
		want, fails = refusal, true
	}
	if fails {
		switch {
		case !got.failed:
			t.Errorf("strata built it; want an error containing %q", strings.TrimSpace(want))
			ok = false
		case !strings.Contains(got.log, strings.TrimSpace(want)):
			t.Errorf("strata's error does not contain %q:\n%s", strings.TrimSpace(want), got.log)
			ok = false
		}
	} else {
		if got.failed {
			count("failed", c.name) // Fatalf skips the tally below; the summary must still name it
			t.Fatalf("strata build failed; BuildKit builds it\n%s", got.log)
		}
		fsKey, cfgKey := "want/fs", "want/config"
		if len(c.meta["differs"]) > 0 {
			fsKey, cfgKey = "strata/fs", "strata/config"
		}
		for _, cmp := range []struct{ key, got string }{{fsKey, got.fs}, {cfgKey, got.config}} {
			want, has := c.sections[cmp.key]
			if !has {
				if strings.HasPrefix(cmp.key, "strata/") {
					want, has = c.sections["want/"+strings.TrimPrefix(cmp.key, "strata/")]
				}
				if !has {
					t.Errorf("no %s section (run with -record)", cmp.key)
					ok = false
					continue
				}
			}
			if d := lineDiff(want, cmp.got); d != "" {
				t.Errorf("%s differs (- want, + strata):\n%s\nfollows %s", cmp.key, d, c.meta["follows"])
				ok = false
			}
		}
	}
	switch {
	case !ok:
		count("failed", c.name)
	case len(c.meta["differs"]) > 0:
		count("differs", c.name)
	default:
		count("same", c.name)
	}
}

// lineDiff lists lines only in want ("- ") and only in got ("+ "), or "" when equal.
func lineDiff(want, got string) string {
	if strings.TrimSpace(want) == strings.TrimSpace(got) {
		return ""
	}
	set := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			m[l]++
		}
		return m
	}
	w, g := set(want), set(got)
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(want), "\n") {
		if g[l] == 0 {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if w[l] == 0 {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	if b.Len() == 0 {
		return "(same lines, different order or count)\n- " + want + "\n+ " + got
	}
	return b.String()
}
