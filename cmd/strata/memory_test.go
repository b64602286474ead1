package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// peakRSSProgram runs a command and prints its peak resident set in KB. It exists because a
// child forked straight from the test binary reports the test binary's own resident set as its
// peak (Linux keeps the high-water mark across exec); a small wrapper gives a clean start.
const peakRSSProgram = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
}
`

// peakRSS runs strata with args and returns its peak resident set (strata and the namespace
// child it waits for) in MB.
func peakRSS(t *testing.T, args ...string) int64 {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "peakrss.go")
	if err := os.WriteFile(src, []byte(peakRSSProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "peakrss")
	build := exec.Command("go", "build", "-o", bin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the RSS wrapper: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append([]string{strataBin}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("strata %v: %v\n%s", args, err, stderr.String())
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("wrapper printed %q", out)
	}
	return kb >> 10
}

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
	mb := peakRSS(t, "--root", e.root, "build", "--progress=quiet", ctx)
	t.Logf("peak RSS %d MB", mb)
	if mb > 300 {
		t.Errorf("peak RSS %d MB, want at most 300 MB", mb)
	}
}
