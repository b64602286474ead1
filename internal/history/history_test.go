package history

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func sample(id string, start time.Time) *Record {
	return &Record{
		ID: id, Start: start, Duration: 3 * time.Second,
		Dockerfile: "/src/Dockerfile", DockerfileDigest: "sha256:" + strings.Repeat("ab", 32),
		Target: "app", Context: "/src", BuildArgs: map[string]string{"VERSION": "2"}, Tags: []string{"app:dev"},
		Outcome: OutcomeFailed, Error: "process \"/bin/sh -c false\" did not complete successfully: exit code: 1",
		Steps: []Step{
			{Stage: "app", Pos: 2, Line: 2, Text: "COPY . /src", Key: strings.Repeat("1", 64), Result: ResultHit,
				Duration: 20 * time.Millisecond, Size: 1234, LastCost: 2 * time.Second},
			{Stage: "app", Pos: 3, Line: 3, Text: "RUN make", Key: strings.Repeat("2", 64), Result: ResultHit, Remote: true,
				Duration: time.Millisecond, Size: 99, LastCost: 5 * time.Second},
			{Stage: "app", Pos: 4, Line: 4, Text: "RUN make test", Key: strings.Repeat("3", 64), Result: ResultMiss,
				Reason: "src/a.go changed", Duration: time.Second, Size: 7, LastCost: time.Second},
			{Stage: "app", Pos: 5, Line: 5, Text: "RUN false", Result: ResultFailed, Duration: 10 * time.Millisecond},
		},
	}
}

var t0 = time.Date(2026, 12, 3, 6, 0, 0, 123456789, time.UTC)

func TestRoundTrip(t *testing.T) {
	root := t.TempDir()
	want := sample("0123456789abcdef", t0)
	if err := Write(root, "", want, DefaultKeep); err != nil {
		t.Fatal(err)
	}
	if want.Version != Version {
		t.Fatalf("Write left version %d", want.Version)
	}
	for _, ref := range []string{"0123456789abcdef", "0123", "latest", ""} {
		got, skipped, err := Find(root, ref)
		if err != nil || len(skipped) > 0 {
			t.Fatalf("Find(%q): %v %v", ref, err, skipped)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Find(%q) =\n%+v\nwant\n%+v", ref, got, want)
		}
	}
	recs, skipped, err := List(root)
	if err != nil || len(skipped) > 0 || len(recs) != 1 || !reflect.DeepEqual(recs[0], want) {
		t.Fatalf("List: %v %v %+v", err, skipped, recs)
	}
	if got := want.Hits(); got != 2 {
		t.Errorf("Hits = %d, want 2", got)
	}
	if got := want.Saved(); got != 7*time.Second {
		t.Errorf("Saved = %v, want 7s (the last-run cost of the hits)", got)
	}
	if _, _, err := Find(root, "fff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find(unknown) = %v, want ErrNotFound", err)
	}
}

func TestListNewestFirstAndAmbiguousPrefix(t *testing.T) {
	root := t.TempDir()
	for i, id := range []string{"aa01", "aa02", "bb03"} {
		if err := Write(root, "", sample(id, t0.Add(time.Duration(i)*time.Minute)), 0); err != nil {
			t.Fatal(err)
		}
	}
	recs, _, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, " ") != "bb03 aa02 aa01" {
		t.Fatalf("List order %v, want newest first", ids)
	}
	if _, _, err := Find(root, "aa"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("Find(aa) = %v, want ambiguous", err)
	}
	removed, err := Remove(root, "aa01", "bb")
	if err != nil || strings.Join(removed, " ") != "aa01 bb03" {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	if r, _, err := Find(root, "latest"); err != nil || r.ID != "aa02" {
		t.Fatalf("latest after rm = %v, %v", r, err)
	}
	if _, err := Remove(root, "zz"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remove(zz) = %v", err)
	}
}

func TestKeepBounds(t *testing.T) {
	root := t.TempDir()
	for i := range 7 {
		if err := Write(root, "", sample(fmt.Sprintf("%04x", i), t0.Add(time.Duration(i)*time.Second)), 3); err != nil {
			t.Fatal(err)
		}
	}
	recs, _, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].ID != "0006" || recs[2].ID != "0004" {
		t.Fatalf("after 7 writes with keep 3: %d records, newest %v", len(recs), recs)
	}
	n, err := Prune(root, 1)
	if err != nil || n != 2 {
		t.Fatalf("Prune(1) = %d, %v", n, err)
	}
	if n, err = Prune(root, 0); err != nil || n != 1 {
		t.Fatalf("Prune(0) = %d, %v", n, err)
	}
	if recs, _, _ := List(root); len(recs) != 0 {
		t.Fatalf("%d records after Prune(0)", len(recs))
	}
}

func TestDamagedRecordSkipped(t *testing.T) {
	root := t.TempDir()
	for i, id := range []string{"0001", "0002", "0003"} {
		if err := Write(root, "", sample(id, t0.Add(time.Duration(i)*time.Second)), 0); err != nil {
			t.Fatal(err)
		}
	}
	// A torn write (a machine crash can leave one: records are not fsynced) and a record from a
	// newer strata.
	ents, _ := os.ReadDir(Dir(root))
	var damaged string
	for _, e := range ents {
		p := filepath.Join(Dir(root), e.Name())
		switch {
		case strings.HasSuffix(e.Name(), "-0003.json"):
			damaged = p
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)/2], 0o600)
		case strings.HasSuffix(e.Name(), "-0001.json"):
			os.WriteFile(p, []byte(`{"version": 99, "id": "0001"}`), 0o600)
		}
	}
	recs, skipped, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != "0002" {
		t.Fatalf("List kept %+v", recs)
	}
	if len(skipped) != 2 || !strings.Contains(skipped[0], damaged) || !strings.Contains(skipped[0], "damaged") ||
		!strings.Contains(skipped[1], "newer") {
		t.Fatalf("skipped notes %q", skipped)
	}
	// latest is the newest build that can be read.
	r, skipped, err := Find(root, "latest")
	if err != nil || r.ID != "0002" || len(skipped) != 1 {
		t.Fatalf("Find(latest) = %v, %q, %v", r, skipped, err)
	}
	if _, _, err := Find(root, "0003"); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Find(damaged) = %v", err)
	}
	// Unreadable records count toward the bound and age out like the rest.
	if n, err := Prune(root, 1); err != nil || n != 2 {
		t.Fatalf("Prune(1) = %d, %v", n, err)
	}
}

func TestTempFilesInvisibleAndSwept(t *testing.T) {
	root := t.TempDir()
	if err := Write(root, "", sample("0001", t0), 0); err != nil {
		t.Fatal(err)
	}
	// What a writer killed between create and rename leaves: never listed, removed once stale.
	fresh := filepath.Join(Dir(root), tmpPrefix+"00000000000000000009-0009.json-123")
	stale := filepath.Join(Dir(root), tmpPrefix+"00000000000000000008-0008.json-456")
	for _, p := range []string{fresh, stale} {
		if err := os.WriteFile(p, []byte(`{"id":`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	os.Chtimes(stale, old, old)
	recs, skipped, err := List(root)
	if err != nil || len(recs) != 1 || len(skipped) != 0 {
		t.Fatalf("List with temp files: %v %v %v", recs, skipped, err)
	}
	if _, err := Prune(root, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a live writer's temp file was removed: %v", err)
	}
}

func TestNoHistoryYet(t *testing.T) {
	root := t.TempDir()
	if recs, skipped, err := List(root); err != nil || len(recs)+len(skipped) != 0 {
		t.Fatalf("List on an empty store: %v %v %v", recs, skipped, err)
	}
	if _, _, err := Find(root, "latest"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Find(latest) on an empty store: %v", err)
	}
	if n, err := Prune(root, 0); err != nil || n != 0 {
		t.Fatalf("Prune on an empty store: %d %v", n, err)
	}
}

func TestConcurrentWritersGoroutines(t *testing.T) {
	root := t.TempDir()
	const writers, each, keep = 8, 15, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := sample(fmt.Sprintf("%02x%02x%s", w, i, NewID()), time.Now())
				errs <- Write(root, "", r, keep)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkIntact(t, root, keep)
}

// TestWriterProcess is the child of TestConcurrentWriterProcesses.
func TestWriterProcess(t *testing.T) {
	root := os.Getenv("STRATA_HISTORY_TEST_ROOT")
	if root == "" {
		t.Skip("run by TestConcurrentWriterProcesses")
	}
	keep, _ := strconv.Atoi(os.Getenv("STRATA_HISTORY_TEST_KEEP"))
	for range 30 {
		if err := Write(root, "", sample(NewID(), time.Now()), keep); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentWriterProcesses(t *testing.T) {
	root := t.TempDir()
	const keep = 25
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriterProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "STRATA_HISTORY_TEST_ROOT="+root, "STRATA_HISTORY_TEST_KEEP="+strconv.Itoa(keep))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer %d: %v\n%s", i, err, outs[i])
		}
	}
	checkIntact(t, root, keep)
}

// checkIntact asserts the history holds exactly keep readable records and no temp file.
func checkIntact(t *testing.T, root string, keep int) {
	t.Helper()
	recs, skipped, err := List(root)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("List: %v, skipped %q", err, skipped)
	}
	if len(recs) != keep {
		t.Fatalf("%d records, want %d", len(recs), keep)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Start.After(recs[i-1].Start) {
			t.Fatalf("record %d newer than %d", i, i-1)
		}
	}
	ents, _ := os.ReadDir(Dir(root))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}
