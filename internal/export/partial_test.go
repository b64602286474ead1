package export

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestWriteFileIsAtomicAndSweepsDeadPartials(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out.tar")
	// Left by writers that died: one of out.tar (swept), one of another output (not this
	// output's to sweep), a live writer's (locked: kept), and files strata never made.
	dead := filepath.Join(dir, ".out.tar"+partialMarker+"dead")
	other := filepath.Join(dir, ".other.tar"+partialMarker+"dead")
	live := filepath.Join(dir, ".out.tar"+partialMarker+"live")
	for _, p := range []string{dead, other, live, filepath.Join(dir, ".out.tar.swp"), filepath.Join(dir, "out.tar.strata-partial-x")} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lf, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	var during []string
	err = WriteFile(dest, 0o644, func(w io.Writer) error {
		during = dirNames(t, dir)
		_, err := io.WriteString(w, "complete")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range during {
		if n == "out.tar" {
			t.Error("dest visible before the write finished")
		}
	}
	if got, _ := os.ReadFile(dest); string(got) != "complete" {
		t.Errorf("dest holds %q", got)
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("dest mode: %v %v", fi, err)
	}
	want := []string{".other.tar" + partialMarker + "dead", ".out.tar" + partialMarker + "live", ".out.tar.swp", "out.tar", "out.tar.strata-partial-x"}
	if got := dirNames(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after write: %v, want %v", got, want)
	}

	// A failed write leaves the old output and nothing else.
	err = WriteFile(dest, 0o644, func(w io.Writer) error {
		io.WriteString(w, "half")
		return errors.New("registry went away")
	})
	if err == nil {
		t.Fatal("failed write reported success")
	}
	if got, _ := os.ReadFile(dest); string(got) != "complete" {
		t.Errorf("dest after a failed write holds %q", got)
	}
	if got := dirNames(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("after failed write: %v, want %v", got, want)
	}
}

// TestWriteFileKilled kills a process in the middle of WriteFile: nothing of it may stay
// behind under a name the next write of the same output does not sweep.
func TestWriteFileKilled(t *testing.T) {
	if os.Getenv("STRATA_PARTIAL_HELPER") != "" {
		dest := os.Getenv("STRATA_PARTIAL_HELPER")
		namedPartials = os.Getenv("STRATA_PARTIAL_NAMED") != ""
		WriteFile(dest, 0o644, func(w io.Writer) error {
			w.Write(make([]byte, 1<<20))
			os.WriteFile(dest+".started", nil, 0o644)
			time.Sleep(time.Minute)
			return nil
		})
		os.Exit(0)
	}
	for _, fallback := range []bool{false, true} {
		dir := t.TempDir()
		dest := filepath.Join(dir, "out.tar")
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFileKilled$")
		cmd.Env = append(os.Environ(), "STRATA_PARTIAL_HELPER="+dest)
		if fallback {
			cmd.Env = append(cmd.Env, "STRATA_PARTIAL_NAMED=1")
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(dest + ".started"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatal("helper never started writing")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		os.Remove(dest + ".started")
		if _, err := os.Stat(dest); err == nil {
			t.Error("killed write left dest")
		}
		left := dirNames(t, dir)
		if fallback != (len(left) == 1) {
			t.Errorf("fallback=%v: the kill left %v", fallback, left)
		}
		if err := WriteFile(dest, 0o644, func(w io.Writer) error { _, err := io.WriteString(w, "ok"); return err }); err != nil {
			t.Fatal(err)
		}
		if got := dirNames(t, dir); strings.Join(got, " ") != "out.tar" {
			t.Errorf("fallback=%v: after the next write: %v, want only out.tar", fallback, got)
		}
	}
}
