// Command reliability turns the `go test -json` stream of strata's suite into what a person
// reads: the output of failed tests, a line per package as `go test` prints it, and the
// reliability table of issue 10 — for each probe (crash, concurrency, hostile input, memory,
// faults, secrets, isolation, rootless) how many trials ran, how many survived, and which failed.
// A trial is a leaf test (a test without subtests, or one subtest). hack/test pipes the whole
// suite through it, so the table costs no extra run; the long run is in docs/RELIABILITY.md.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// probe is one row of the table: the tests (by package and name) that try it.
type probe struct {
	name string
	pkg  *regexp.Regexp
	test *regexp.Regexp
}

var probes = []probe{
	{"crash: SIGKILL during pull, RUN with secrets, commit, export, cache export; store verify after each", re(`cmd/strata$`), re(`^(TestKill|TestRunSIGKILL|TestSSHKill|TestRootlessKill|TestStoreVerifyRepair)`)},
	{"crash: full disk, damaged records", re(`cmd/strata$|internal/store$|internal/history$`), re(`^(TestFullDisk|TestHistoryDamaged|TestVerify|TestStoreCrash|TestCrash)`)},
	{"concurrency: parallel builds on one store, prune/GC during builds, locked cache mounts", re(`cmd/strata$|internal/store$`), re(`^(TestConcurrent|TestPruneWaits|TestGCSkipped|TestRunCacheMountLocked|TestParallel)`)},
	{"hostile input: layer breakouts (containerd port), CVE cases, context and mount escapes", re(`internal/snapshot$|cmd/strata$|internal/copier$|internal/contenthash$`), re(`(Breakout|Hostile|^TestCVE|Escape|Symlink)`)},
	{"hostile input: fuzzed parsers (frontend, .dockerignore, unpack, cache manifest, --output/--cache CSV)", re(`.`), re(`^Fuzz`)},
	{"memory: 10k instructions, 1M-entry COPY --from, big heredocs, 1,000 layers", re(`cmd/strata$`), re(`(BoundedMemory|Memory|^TestThousandLayers|Heredoc.*RSS)`)},
	{"faults: registry 5xx, resets, stalls, corrupt and cut blobs, auth", re(`cmd/strata$|internal/testenv$|internal/registry$|internal/remotecache$`), re(`^(TestFault|TestStreamedUnpackSurvives|TestProxyFault|TestAuth|TestRegistryAuth|TestLazyBlobGone)`)},
	{"secrets: never in a layer, key, store, history, log; ssh keys likewise", re(`cmd/strata$`), re(`^(TestRunSecretMountNeverPersisted|TestSSHForwarding|TestHistoryRemoteHitsArgsAndSecrets|TestSecretRequired|TestFlagSecret)`)},
	{"isolation: seccomp, masked paths, capabilities, runc version check", re(`cmd/strata$|internal/executor$`), re(`^(TestIsolation|TestSeccomp|TestMasked|TestRuncVersion)`)},
	{"rootless: builds, owners, errors, unprivileged-container /proc", re(`cmd/strata$|internal/userns$`), re(`^TestRootless`)},
}

func re(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// event is one line of `go test -json` (test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type result struct {
	pkg, test string
	action    string // pass, fail, skip
	output    []string
}

func main() {
	in := flag.String("in", "-", "go test -json output (- for stdin)")
	flag.Parse()
	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(os.Stderr, "reliability:", err)
			os.Exit(2)
		}
		defer f.Close()
		r = f
	}
	if failed := report(r, os.Stdout); failed {
		os.Exit(1)
	}
}

// report reads the stream and prints failures, package lines and the table; it reports whether
// anything failed.
func report(r io.Reader, w io.Writer) bool {
	results := map[string]*result{} // pkg + "\x00" + test
	var order []string
	pkgOut := map[string][]string{}
	pkgAction := map[string]string{}
	var pkgs []string
	failed := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintln(w, string(line)) // not test2json (e.g. a build error): pass it on
			continue
		}
		if e.Test == "" {
			switch e.Action {
			case "output", "build-output":
				pkgOut[e.Package] = append(pkgOut[e.Package], e.Output)
			case "pass", "fail", "skip":
				if _, seen := pkgAction[e.Package]; !seen {
					pkgs = append(pkgs, e.Package)
				}
				pkgAction[e.Package] = e.Action
			case "build-fail":
				failed = true
			}
			continue
		}
		k := e.Package + "\x00" + e.Test
		res := results[k]
		if res == nil {
			res = &result{pkg: e.Package, test: e.Test}
			results[k] = res
			order = append(order, k)
		}
		switch e.Action {
		case "output":
			res.output = append(res.output, e.Output)
		case "pass", "fail", "skip":
			res.action = e.Action
		}
	}
	parents := parentsOf(results)
	// Failed tests first, with their output, as go test prints them.
	for _, k := range order {
		if res := results[k]; res.action == "fail" && !parents[k] {
			failed = true
			fmt.Fprintf(w, "--- FAIL: %s (%s)\n%s", res.test, res.pkg, strings.Join(res.output, ""))
		}
	}
	for _, p := range pkgs {
		a := pkgAction[p]
		if a == "fail" {
			failed = true
			// The package's own lines (panics, TestMain errors, the FAIL line) are in its output.
			fmt.Fprint(w, strings.Join(pkgOut[p], ""))
			continue
		}
		last := ""
		if out := pkgOut[p]; len(out) > 0 {
			last = strings.TrimSpace(out[len(out)-1])
		}
		if strings.HasPrefix(last, "ok") || strings.HasPrefix(last, "?") {
			fmt.Fprintln(w, last)
		} else {
			fmt.Fprintf(w, "%s\t%s\n", a, p)
		}
	}
	fmt.Fprint(w, table(results, order, parents))
	return failed
}

// parentsOf marks the tests that have subtests in the stream: only leaves are trials.
func parentsOf(results map[string]*result) map[string]bool {
	parents := map[string]bool{}
	for k := range results {
		for i := strings.LastIndexByte(k, '/'); i > strings.IndexByte(k, 0); i = strings.LastIndexByte(k[:i], '/') {
			parents[k[:i]] = true
		}
	}
	return parents
}

// table renders the reliability table from the leaf tests each probe names.
func table(results map[string]*result, order []string, parents map[string]bool) string {
	var b strings.Builder
	b.WriteString("\n== reliability (issue 10; the long run: docs/RELIABILITY.md)\n")
	b.WriteString("| probe | tried | survived | failure |\n|---|---|---|---|\n")
	for _, p := range probes {
		tried, survived := 0, 0
		var failures []string
		for _, k := range order {
			res := results[k]
			top, _, _ := strings.Cut(res.test, "/")
			if !p.pkg.MatchString(res.pkg) || !p.test.MatchString(top) || parents[k] {
				continue
			}
			switch res.action {
			case "pass":
				tried++
				survived++
			case "fail":
				tried++
				failures = append(failures, res.test)
			}
		}
		sort.Strings(failures)
		f := "—"
		if len(failures) > 0 {
			f = strings.Join(failures, ", ")
		}
		if tried == 0 {
			f = "not run"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s |\n", p.name, tried, survived, f)
	}
	return b.String()
}
