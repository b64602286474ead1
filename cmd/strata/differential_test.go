package main

// TestDifferential is the project's guard for the two cache invariants (DESIGN.md §3.1, §3.2).
// For random projects and random edit sequences (difftest_gen_test.go), after every edit it
//
//   - builds with the cache (one store kept across the sequence) and with --no-cache (a second
//     store, so the reference never reads a record the cached build wrote, yet base image
//     resolution stays warm), exports both as a local directory and an OCI layout, and compares
//     every file's path, type, mode, owner, content and link target plus the image config
//     (timestamps aside). Any difference is a stale hit.
//   - asks the oracle which steps had to miss: a step must hit when a step with the same abstract
//     key (same instruction, same selected inputs, same env/cwd, same parent content) ran in an
//     earlier build of the sequence. A miss there is a needless miss.
//
// Quick CI run: go test -run Differential ./cmd/strata (50 sequences).
// Long run:     go test -run Differential -count=1 ./cmd/strata -args -sequences=500
// Reproduce:    go test -run Differential -count=1 ./cmd/strata -args -seed=N -sequences=1

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	diffSequences = flag.Int("sequences", 50, "differential test: number of random edit sequences")
	diffSeed      = flag.Int64("seed", 0, "differential test: seed of the first sequence (0 = from the clock); sequence i uses seed+i")
	diffEdits     = flag.Int("edits", 4, "differential test: edits per sequence")
)

type diffStats struct {
	mu             sync.Mutex
	stale          int
	needless       int
	unexpectedHits int
	sequences      int
	builds         int
	runtimeFlakes  int
	linked         int // cached-store builds whose COPY linked unchanged files from an earlier snapshot
}

// runtimeFlake matches a RUN whose container was killed before or while it ran (runc init or the
// process got SIGKILL). That is an executor problem, not a cache one: the differential test
// retries such a build once (a retry can only turn expected misses into hits, which the oracle
// tolerates) and counts it, so the cache invariants stay checked.
var runtimeFlake = regexp.MustCompile(`cannot start an already running container|container process is already dead|did not complete successfully: exit code: 137`)

// diffBuildTimeout bounds one build: a tiny project builds in seconds, so a build that takes
// minutes is hung and must fail the sequence, not stall CI.
const diffBuildTimeout = 3 * time.Minute

func diffBuild(t *testing.T, e *env, stats *diffStats, args ...string) result {
	t.Helper()
	run := func() result {
		ctx, cancel := context.WithTimeout(context.Background(), diffBuildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, strataBin, append([]string{"--root", e.root, "build", "--progress=plain"}, args...)...)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %s: %w", diffBuildTimeout, err)
		}
		return result{out: buf.String(), err: err}
	}
	r := run()
	if r.err != nil && runtimeFlake.MatchString(r.out) {
		stats.mu.Lock()
		stats.runtimeFlakes++
		stats.mu.Unlock()
		t.Logf("runtime flake (retrying once): %s", runtimeFlake.FindString(r.out))
		r = run()
	}
	if r.err != nil {
		t.Fatalf("strata build %v: %v\n%s", args, r.err, r.out)
	}
	return r
}

func TestDifferential(t *testing.T) {
	if strataBin == "" {
		t.Skip("needs the end-to-end harness (root)")
	}
	n := *diffSequences
	if testing.Short() && n > 10 {
		n = 10
	}
	seed := *diffSeed
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000_000
	}
	t.Logf("differential: %d sequences from seed %d", n, seed)
	stats := &diffStats{}
	start := time.Now()
	t.Run("seq", func(t *testing.T) {
		for i := 0; i < n; i++ {
			s := seed + int64(i)
			t.Run(strconv.FormatInt(s, 10), func(t *testing.T) {
				t.Parallel()
				runDiffSequence(t, s, stats)
			})
		}
	})
	summary := fmt.Sprintf("stale hits: %d, needless misses: %d, sequences: %d", stats.stale, stats.needless, stats.sequences)
	detail := fmt.Sprintf("(%d builds in %s; %d hits the oracle did not predict, all with outputs equal to --no-cache; %d cached-store builds linked unchanged files; %d runtime flakes retried; first seed %d)",
		stats.builds, time.Since(start).Round(time.Second), stats.unexpectedHits, stats.linked, stats.runtimeFlakes, seed)
	t.Log(summary + " " + detail)
	fmt.Println(summary)
	fmt.Println(detail)
	if stats.stale != 0 || stats.needless != 0 {
		t.Errorf("the cache is wrong: %s (each failing sequence is printed above with its -seed)", summary)
	}
}

func runDiffSequence(t *testing.T, seed int64, stats *diffStats) {
	rng := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	ctxDir := filepath.Join(dir, "ctx")
	cached := &env{t: t, root: filepath.Join(dir, "store-cached"), dir: dir}
	ref := &env{t: t, root: filepath.Join(dir, "store-nocache"), dir: dir}
	p := genProject(rng)
	if err := p.writeAll(ctxDir); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{} // abstract keys built so far in this sequence
	var log []string
	repro := fmt.Sprintf("go test -run Differential -count=1 ./cmd/strata -args -seed=%d -sequences=1", seed)
	for i := 0; i <= *diffEdits; i++ {
		desc := "initial build"
		if i > 0 {
			var err error
			if desc, err = p.edit(rng, ctxDir); err != nil {
				t.Fatalf("seed %d: edit %q: %v", seed, desc, err)
			}
		}
		log = append(log, desc)
		header := func() string {
			return fmt.Sprintf("seed %d, edit %d (%s)\n  reproduce: %s\n  edits so far: %q\n  Dockerfile:\n%s  .dockerignore: %q, build args: %v",
				seed, i, desc, repro, log, indent(strings.ReplaceAll(p.dockerfile(), "{{BASE}}", "busybox")), p.dockerignore(), p.buildArgs())
		}

		outC, outR := filepath.Join(dir, fmt.Sprintf("out-c%d", i)), filepath.Join(dir, fmt.Sprintf("out-r%d", i))
		rc := diffBuild(t, cached, stats, diffBuildArgs(p, outC, ctxDir)...)
		if linkedLine.MatchString(rc.out) {
			stats.mu.Lock()
			stats.linked++
			stats.mu.Unlock()
		}
		diffBuild(t, ref, stats, append([]string{"--no-cache"}, diffBuildArgs(p, outR, ctxDir)...)...)

		// Stale hits: the cached result must equal the --no-cache one.
		var diffs []string
		diffs = append(diffs, compareTrees(t, filepath.Join(outC, "fs"), filepath.Join(outR, "fs"))...)
		cc, cr := ociConfig(t, filepath.Join(outC, "oci")), ociConfig(t, filepath.Join(outR, "oci"))
		if cc != cr {
			diffs = append(diffs, fmt.Sprintf("image config:\n      cached:   %s\n      no-cache: %s", cc, cr))
		}
		os.RemoveAll(outC)
		os.RemoveAll(outR)

		// Needless misses: compare the cached build's step states with the oracle.
		sim := p.simulate()
		got := parseSteps(rc.out)
		var needless, unexpected []string
		expected := map[string]bool{}
		for _, sd := range p.stages {
			if !sim.reachable[sd.name] {
				continue
			}
			for _, ss := range sim.stages[sd.name].steps {
				id := fmt.Sprintf("%s %d", sd.name, ss.pos)
				expected[id] = true
				g, ok := got[id]
				switch {
				case !ok:
					t.Errorf("%s\n  step [%s] %s: no progress line in the output:\n%s", header(), id, ss.text, rc.out)
				case g.text != ss.text:
					t.Errorf("%s\n  step [%s]: output shows %q, oracle expects %q", header(), id, g.text, ss.text)
				case seen[ss.key] && g.state != "CACHED":
					needless = append(needless, fmt.Sprintf("step [%s] %s\n    expected CACHED (the same inputs were built before: %s)\n    got %s: %s",
						id, ss.text, ss.inputs, g.state, g.reason))
				case !seen[ss.key] && g.state == "CACHED":
					unexpected = append(unexpected, fmt.Sprintf("step [%s] %s: oracle expected a miss (%s), got CACHED", id, ss.text, ss.inputs))
				}
			}
		}
		for id, g := range got {
			if !expected[id] && g.pos > 1 {
				needless = append(needless, fmt.Sprintf("step [%s] %s: ran although the target does not need stage %s (%s)", id, g.text, g.stage, g.state))
			}
		}
		for _, sd := range p.stages {
			if sim.reachable[sd.name] {
				for _, ss := range sim.stages[sd.name].steps {
					seen[ss.key] = true
				}
			}
		}

		stats.mu.Lock()
		stats.builds += 2
		if len(diffs) > 0 {
			stats.stale++
		}
		stats.needless += len(needless)
		if len(diffs) == 0 {
			stats.unexpectedHits += len(unexpected)
		}
		stats.mu.Unlock()
		if len(diffs) > 0 {
			sort.Strings(diffs)
			if len(diffs) > 20 {
				diffs = append(diffs[:20], fmt.Sprintf("... and %d more", len(diffs)-20))
			}
			t.Errorf("STALE HIT: %s\n  result differs from --no-cache:\n    %s\n  steps the oracle did not expect to hit:\n    %s\n  cached build output:\n%s",
				header(), strings.Join(diffs, "\n    "), strings.Join(unexpected, "\n    "), indent(rc.out))
		}
		if len(needless) > 0 {
			sort.Strings(needless)
			t.Errorf("NEEDLESS MISS: %s\n  %s\n  cached build output:\n%s", header(), strings.Join(needless, "\n  "), indent(rc.out))
		}
		if len(unexpected) > 0 && len(diffs) == 0 && testing.Verbose() {
			t.Logf("info: %s\n  %s", header(), strings.Join(unexpected, "\n  "))
		}
	}
	stats.mu.Lock()
	stats.sequences++
	stats.mu.Unlock()
}

func diffBuildArgs(p *project, out, ctxDir string) []string {
	args := p.buildArgs()
	return append(args,
		"-o", "type=local,dest="+filepath.Join(out, "fs"),
		"-o", "type=oci,tar=false,dest="+filepath.Join(out, "oci"),
		ctxDir)
}

type gotStep struct {
	stage  string
	pos    int
	text   string
	state  string // CACHED, MISS, RAN
	reason string
}

var diffStepLine = regexp.MustCompile(`(?m)^#(\d+) \[(\S+) (\d+)/(\d+)\] (.*)$`)

// parseSteps maps "stage pos" to what the plain progress output says about that step.
func parseSteps(out string) map[string]gotStep {
	steps := map[string]gotStep{}
	for _, m := range diffStepLine.FindAllStringSubmatch(out, -1) {
		if m[2] == "internal]" || strings.HasPrefix(m[2], "internal") {
			continue
		}
		pos, _ := strconv.Atoi(m[3])
		g := gotStep{stage: m[2], pos: pos, text: m[5], state: "RAN"}
		if strings.Contains(out, "#"+m[1]+" CACHED\n") {
			g.state = "CACHED"
		} else if r := regexp.MustCompile(`(?m)^#` + m[1] + ` MISS: (.*)$`).FindStringSubmatch(out); r != nil {
			g.state, g.reason = "MISS", r[1]
		}
		steps[fmt.Sprintf("%s %d", m[2], pos)] = g
	}
	return steps
}

// treeEntries describes every entry below root: type, permission bits, owner, content digest or
// link target (never times).
func treeEntries(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%s %o %d:%d", info.Mode().Type().String(), st.Mode&0o7777, st.Uid, st.Gid)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			desc += " " + hex.EncodeToString(h.Sum(nil))[:16]
			if info.Size() < 200 {
				data, _ := os.ReadFile(p)
				desc += fmt.Sprintf(" %q", data)
			}
		}
		m[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return m
}

func compareTrees(t *testing.T, a, b string) []string {
	ea, eb := treeEntries(t, a), treeEntries(t, b)
	var diffs []string
	for p, da := range ea {
		if db, ok := eb[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("/%s: cached has %s, no-cache has nothing", p, da))
		} else if da != db {
			diffs = append(diffs, fmt.Sprintf("/%s: cached %s, no-cache %s", p, da, db))
		}
	}
	for p, db := range eb {
		if _, ok := ea[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("/%s: cached has nothing, no-cache has %s", p, db))
		}
	}
	return diffs
}

// ociConfig reads the image config from an OCI layout and renders it without timestamps (and
// with only the number of layers: layer digests cover file times, which a rebuild changes).
func ociConfig(t *testing.T, dir string) string {
	t.Helper()
	blob := func(dg string) []byte {
		algo, hexd, _ := strings.Cut(dg, ":")
		data, err := os.ReadFile(filepath.Join(dir, "blobs", algo, hexd))
		if err != nil {
			t.Fatalf("oci layout %s: %v", dir, err)
		}
		return data
	}
	var idx struct {
		Manifests []struct{ Digest string } `json:"manifests"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &idx); err != nil || len(idx.Manifests) == 0 {
		t.Fatalf("oci layout %s: bad index.json: %v %s", dir, err, data)
	}
	var man struct {
		Config struct{ Digest string } `json:"config"`
	}
	if err := json.Unmarshal(blob(idx.Manifests[0].Digest), &man); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(blob(man.Config.Digest), &cfg); err != nil {
		t.Fatal(err)
	}
	delete(cfg, "created")
	if h, ok := cfg["history"].([]any); ok {
		for _, e := range h {
			if m, ok := e.(map[string]any); ok {
				delete(m, "created")
			}
		}
	}
	if rf, ok := cfg["rootfs"].(map[string]any); ok {
		if ids, ok := rf["diff_ids"].([]any); ok {
			rf["diff_ids"] = len(ids)
		}
	}
	out, _ := json.Marshal(cfg)
	return string(out)
}

func lutimes(p string, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}
