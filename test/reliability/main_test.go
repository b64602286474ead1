package main

import (
	"bytes"
	"strings"
	"testing"
)

// A stream with a passing parent of two trials (one failed), a passing fuzz target, a package
// that failed and one that passed: the failure's output is shown, the table counts leaves only.
func TestReport(t *testing.T) {
	stream := strings.Join([]string{
		`{"Action":"run","Package":"x/cmd/strata","Test":"TestKillLeavesNothingBehind"}`,
		`{"Action":"run","Package":"x/cmd/strata","Test":"TestKillLeavesNothingBehind/during_RUN"}`,
		`{"Action":"output","Package":"x/cmd/strata","Test":"TestKillLeavesNothingBehind/during_RUN","Output":"    leftover bundle\n"}`,
		`{"Action":"fail","Package":"x/cmd/strata","Test":"TestKillLeavesNothingBehind/during_RUN"}`,
		`{"Action":"pass","Package":"x/cmd/strata","Test":"TestKillLeavesNothingBehind/during_export"}`,
		`{"Action":"fail","Package":"x/cmd/strata","Test":"TestKillLeavesNothingBehind"}`,
		`{"Action":"output","Package":"x/cmd/strata","Output":"FAIL\tx/cmd/strata\t3.0s\n"}`,
		`{"Action":"fail","Package":"x/cmd/strata"}`,
		`{"Action":"pass","Package":"x/internal/dockerfile","Test":"FuzzParse"}`,
		`{"Action":"output","Package":"x/internal/dockerfile","Output":"ok  \tx/internal/dockerfile\t0.1s\n"}`,
		`{"Action":"pass","Package":"x/internal/dockerfile"}`,
	}, "\n")
	var out bytes.Buffer
	if !report(strings.NewReader(stream), &out) {
		t.Error("a failed trial did not make the report fail")
	}
	got := out.String()
	for _, want := range []string{
		"--- FAIL: TestKillLeavesNothingBehind/during_RUN (x/cmd/strata)\n    leftover bundle\n",
		"FAIL\tx/cmd/strata\t3.0s\n",
		"ok  \tx/internal/dockerfile\t0.1s\n",
		"| crash: SIGKILL during pull, RUN with secrets, commit, export, cache export; store verify after each | 2 | 1 | TestKillLeavesNothingBehind/during_RUN |",
		"| hostile input: fuzzed parsers (frontend, .dockerignore, unpack, cache manifest, --output/--cache CSV) | 1 | 1 | — |",
		"| rootless: builds, owners, errors, unprivileged-container /proc | 0 | 0 | not run |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "--- FAIL: TestKillLeavesNothingBehind (") {
		t.Errorf("a parent was reported as a failure of its own:\n%s", got)
	}
}
