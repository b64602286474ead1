package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// processesWithArgs lists pids whose argv is exactly args.
func processesWithArgs(args ...string) []string {
	want := strings.Join(args, "\x00")
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.TrimRight(string(b), "\x00") == want {
			pids = append(pids, ent.Name())
		}
	}
	return pids
}

// mountsUnder lists mount points under dir as the host sees them.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var ms []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			ms = append(ms, f[4])
		}
		if strings.Contains(line, dir) && len(f) > 4 && !strings.HasPrefix(f[4], dir) {
			ms = append(ms, line) // an overlay whose options name the store
		}
	}
	return ms
}

// runcContainers lists strata containers a runc state root holds.
func runcContainers(root string) string {
	args := []string{"list", "-q"}
	if root != "" {
		args = append([]string{"--root", root}, args...)
	}
	out, _ := exec.Command("runc", args...).CombinedOutput()
	var ids []string
	for _, id := range strings.Fields(string(out)) {
		if strings.HasPrefix(id, "strata-") {
			ids = append(ids, id)
		}
	}
	return strings.Join(ids, " ")
}

func TestRunSIGKILLDuringRunLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A duration no other test uses, so the process scan below only finds ours.
	const nap = "37.25"
	df := "FROM {{BASE}}\nRUN echo before > /before\nRUN echo long-run-started && sleep " + nap + " && echo finished > /finished\n"
	ctx := e.project("kill", map[string]string{"Dockerfile": df})
	runcBefore := runcContainers("")

	cmd := exec.Command(strataBin, "--root", e.root, "build", "--progress=plain", ctx)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !(strings.Contains(out.String(), "long-run-started") && len(processesWithArgs("sleep", nap)) > 0) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the long RUN never started:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	sleepPids := processesWithArgs("sleep", nap)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// Everything the build started dies with it; give the kernel a moment to reap.
	deadline = time.Now().Add(10 * time.Second)
	for {
		left := processesWithArgs("sleep", nap)
		mounts := mountsUnder(t, e.root)
		if len(left) == 0 && len(mounts) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGKILL: sleep processes %v (were %v), mounts %v", left, sleepPids, mounts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := runcContainers(""); got != runcBefore {
		t.Errorf("runc (default root) lists %q after the kill, before %q", got, runcBefore)
	}
	if got := runcContainers("/run/strata/runc"); got != "" {
		// Other builds running at the same moment would show up here only if they ran outside a
		// private namespace, which is a bug of its own.
		t.Errorf("runc --root /run/strata/runc lists %q after the kill", got)
	}

	// The next build succeeds, reuses the step before the killed one, and cleans the dead build's
	// scratch space.
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(strings.ReplaceAll(
		strings.Replace(df, "sleep "+nap, "true", 1), "{{BASE}}", baseRef)), 0o644); err != nil {
		t.Fatal(err)
	}
	o, r := e.buildOCI("afterkill", ctx)
	for name, st := range stepStates(r.out) {
		if strings.Contains(name, "echo before") && st != "CACHED" {
			t.Errorf("%s: %s after the kill, want CACHED", name, st)
		}
	}
	rootfs := o.unpack(t)
	if got := fileAt(t, rootfs, "finished"); got != "finished\n" {
		t.Errorf("/finished = %q", got)
	}
	if ents, err := os.ReadDir(filepath.Join(e.root, "tmp")); err != nil || len(ents) != 0 {
		var names []string
		for _, ent := range ents {
			names = append(names, ent.Name())
		}
		t.Errorf("store scratch after the next build: %v %v", names, err)
	}
	if ms := mountsUnder(t, e.root); len(ms) != 0 {
		t.Errorf("mounts left after the next build: %v", ms)
	}
}
