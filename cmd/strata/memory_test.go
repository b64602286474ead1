package main

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// A 10,000-instruction Dockerfile builds in bounded memory (each step once held a copy of the
// whole env: 1.6 GB for 10,000 ENV lines).
func TestTenThousandInstructionsBoundedMemory(t *testing.T) {
	e := newEnv(t)
	var df strings.Builder
	df.WriteString("FROM scratch\n")
	for i := range 10000 {
		fmt.Fprintf(&df, "ENV V%d=value-%d\n", i, i)
	}
	ctx := e.project("tenk", map[string]string{"Dockerfile": df.String()})
	cmd := exec.Command(strataBin, "--root", e.root, "build", "--progress=quiet", ctx)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// wait4 reports the largest resident set of strata and of the namespace child it waited for.
	maxKB := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	if maxKB > 300<<10 {
		t.Errorf("peak RSS %d MB, want at most 300 MB", maxKB>>10)
	}
}
