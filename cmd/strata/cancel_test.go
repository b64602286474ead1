package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGTERM during a COPY of a big context stops the copy, not only the build once the copy is
// done: the copier looks at the build's context every few dozen files. The check is not a
// timing: while the cancelled build winds down, the test counts the directories the copy has
// written into its overlay's upper dir; a copy that ignored the signal writes every one of them
// before the build can exit (the scratch dir holding them goes only at exit), one that honours it
// stops within a few files of the signal.
func TestSIGTERMStopsCopy(t *testing.T) {
	const dirs, perDir = 500, 100 // 50,000 files
	e := newEnv(t)
	begin := time.Now()
	ctx := filepath.Join(e.dir, "bigctx")
	for d := range dirs {
		dir := filepath.Join(ctx, "ctx", fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := range perDir {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), []byte{byte(f)}, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+baseRef+"\nCOPY ctx /ctx\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Logf("context written in %v", time.Since(begin).Round(time.Millisecond))
	cmd := exec.Command(strataBin, "--root", e.root, "build", "--progress=plain", "--gc-keep-storage", "off", ctx)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// written is how many of the context's directories the copy has created in its upper dir.
	written := func() int {
		n := 0
		uppers, _ := filepath.Glob(filepath.Join(e.root, "tmp", "*", "ws-*", "upper", "ctx"))
		for _, u := range uppers {
			ents, _ := os.ReadDir(u)
			n = max(n, len(ents))
		}
		return n
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "COPY ctx /ctx") || written() == 0 {
		select {
		case err := <-exited:
			t.Fatalf("the build ended (%v) before its COPY started:\n%s", err, out.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the COPY never started:\n%s", out.String())
		}
	}
	atSignal := written()
	t.Logf("COPY started %v after the test began", time.Since(begin).Round(time.Millisecond))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	most := atSignal
	var err error
wait:
	for {
		select {
		case err = <-exited:
			break wait
		case <-time.After(20 * time.Millisecond):
			most = max(most, written())
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the build did not exit after SIGTERM:\n%s", out.String())
		}
	}
	t.Logf("exited %v after the test began", time.Since(begin).Round(time.Millisecond))
	t.Logf("directories written: %d at the signal, at most %d after it, of %d", atSignal, most, dirs)
	if err == nil {
		t.Fatalf("the build succeeded after SIGTERM:\n%s", out.String())
	}
	if most >= dirs/2 {
		t.Errorf("the copy went on to %d of %d directories after SIGTERM (%d at the signal)", most, dirs, atSignal)
	}
	if !strings.Contains(out.String(), "context canceled") {
		t.Errorf("the build's output does not say it was cancelled:\n%s", lastLines(out.String(), 20))
	}
	if r := e.run("store", "verify"); r.err != nil || !strings.HasSuffix(strings.TrimSpace(r.out), ": ok") {
		t.Errorf("store verify after the cancelled build: %v\n%s", r.err, r.out)
	}
	if r := e.run("history", "inspect", "--format", "json", "latest"); !strings.Contains(r.out, `"cancelled"`) {
		t.Errorf("the build is not recorded as cancelled:\n%s", r.out)
	}
}
