// Package history keeps the record of every build in the store (history/ under the store root):
// the record format, writing it crash-safely, listing, finding, removing and bounding the records.
// The build flow fills a Record; this package only stores it, so it knows nothing of builds.
package history

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strata-build/strata/internal/atomicfile"
)

// DirName is the directory under the store root that holds the records.
const DirName = "history"

// DefaultKeep is how many builds are kept when nothing else is configured.
const DefaultKeep = 100

// Version is the record format written; readers skip records of a newer major format.
const Version = 1

// Outcomes of a build.
const (
	OutcomeOK        = "ok"
	OutcomeFailed    = "failed"
	OutcomeCancelled = "cancelled"
)

// Results of a step.
const (
	ResultHit       = "hit"       // served from the cache (Remote says which)
	ResultMiss      = "miss"      // ran, Reason says why
	ResultFailed    = "failed"    // the step the build failed on
	ResultCancelled = "cancelled" // the step that was running when the build was cancelled
)

// Record is one build. The JSON form is documented in docs/HISTORY.md; durations are integer
// nanoseconds, as store.Record's elapsed.
type Record struct {
	Version          int               `json:"version"`
	ID               string            `json:"id"`
	Start            time.Time         `json:"start"`
	Duration         time.Duration     `json:"duration"`
	Dockerfile       string            `json:"dockerfile"`
	DockerfileDigest string            `json:"dockerfileDigest"`
	Target           string            `json:"target"`
	Context          string            `json:"context"`
	BuildArgs        map[string]string `json:"buildArgs,omitempty"`
	Tags             []string          `json:"tags,omitempty"`
	Outcome          string            `json:"outcome"`
	Error            string            `json:"error,omitempty"`
	Image            string            `json:"image,omitempty"` // manifest digest of a build that succeeded
	// Bases are the base images the build's stages resolved, so explain can say "old → new" when
	// a tag moved. Records written before it existed lack it; readers treat that as unknown.
	Bases []Base `json:"bases,omitempty"`
	Steps []Step `json:"steps"`
}

// Base is the image a stage starts from, as it resolved in this build.
type Base struct {
	Stage  string `json:"stage"`
	Image  string `json:"image"`  // reference as written (after ARG expansion)
	Digest string `json:"digest"` // manifest digest it resolved to
}

// Step is one step of a build, in Dockerfile order.
type Step struct {
	Stage  string `json:"stage"`
	Pos    int    `json:"pos"`
	Line   int    `json:"line,omitempty"`
	Text   string `json:"text"`
	Key    string `json:"key,omitempty"`
	Result string `json:"result"`
	Remote bool   `json:"remote,omitempty"` // the hit came from an imported (--cache-from) cache
	Reason string `json:"reason,omitempty"`
	// Duration is the time this build spent on the step.
	Duration time.Duration `json:"duration"`
	Size     int64         `json:"size"` // layer blob size; 0 for a step that changed no file
	// LastCost is how long the step took when it last ran (the cache record's elapsed): for a hit
	// what the cache saved, for a miss this run.
	LastCost time.Duration `json:"lastCost"`
}

// Hits counts the steps served from the cache.
func (r *Record) Hits() int {
	n := 0
	for _, s := range r.Steps {
		if s.Result == ResultHit {
			n++
		}
	}
	return n
}

// Saved is the time the cache saved: what the steps that hit cost when they last ran.
func (r *Record) Saved() time.Duration {
	var d time.Duration
	for _, s := range r.Steps {
		if s.Result == ResultHit {
			d += s.LastCost
		}
	}
	return d
}

// NewID returns a fresh random build ID (16 hex digits, so a short prefix is enough to name one).
func NewID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Dir is the history directory of a store root.
func Dir(root string) string { return filepath.Join(root, DirName) }

// A record's file is START-ID.json with START the start time in nanoseconds, zero-padded, so the
// names sort by start and listing, bounding and "latest" need no record to be read (a damaged one
// still ages out). Files being written are ".tmp-…", as everywhere in the store, so GC's sweep
// and verify recognise a killed writer's leftovers.
const tmpPrefix = ".tmp-"

func fileName(r *Record) string {
	return fmt.Sprintf("%020d-%s.json", r.Start.UnixNano(), r.ID)
}

// entry is one record file, known by its name.
type entry struct {
	name  string
	start int64
	id    string
}

func parseName(name string) (entry, bool) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok || strings.HasPrefix(name, ".") {
		return entry{}, false
	}
	ts, id, ok := strings.Cut(base, "-")
	if !ok || id == "" {
		return entry{}, false
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return entry{}, false
	}
	return entry{name: name, start: n, id: id}, true
}

// entries lists the record files, newest first.
func entries(root string) ([]entry, error) {
	ents, err := os.ReadDir(Dir(root))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("build history: %w", err)
	}
	var out []entry
	for _, e := range ents {
		if en, ok := parseName(e.Name()); ok {
			out = append(out, en)
		}
	}
	slices.SortFunc(out, func(a, b entry) int {
		if c := cmp.Compare(b.start, a.start); c != 0 {
			return c
		}
		return strings.Compare(b.id, a.id)
	})
	return out, nil
}

// Write stores r (complete or not at all: temp file, rename) and then bounds the history to the
// keep newest builds (keep ≤ 0: no bound). The record is not fsynced: history is informational
// and List skips a record that does not parse, so what a machine crash can do to the last records
// (lose them, or leave one empty or torn) costs entries of the history, never a wrong answer, while
// the file and directory fsyncs cost 20-70 ms of every build on a busy disk, most of a no-change
// rebuild's fixed cost. A kill cannot tear a record: the rename happens after the write.
func Write(root, scratch string, r *Record, keep int) error {
	if r.ID == "" || strings.ContainsAny(r.ID, "-/.") {
		return fmt.Errorf("build history: bad record id %q", r.ID)
	}
	r.Version = Version
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("build history: %w", err)
	}
	dir := Dir(root)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("build history: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, fileName(r)), data, atomicfile.Options{Scratch: scratch, NoSync: true}); err != nil {
		return fmt.Errorf("build history: write record %s: %w", r.ID, err)
	}
	if keep > 0 {
		if _, err := Prune(root, keep); err != nil {
			return err
		}
	}
	return nil
}

// List returns the records newest first. A record that cannot be read (damaged, or written by a
// newer strata) is skipped and named in skipped, never an error: history is informational.
func List(root string) (recs []*Record, skipped []string, err error) {
	ents, err := entries(root)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		r, err := read(root, e)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // removed since the listing: not damage
				skipped = append(skipped, err.Error())
			}
			continue
		}
		recs = append(recs, r)
	}
	return recs, skipped, nil
}

func read(root string, e entry) (*Record, error) {
	p := filepath.Join(Dir(root), e.name)
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: damaged record skipped: %v", p, err)
	}
	switch {
	case r.Version > Version:
		return nil, fmt.Errorf("%s: record format %d is newer than this strata's (%d), skipped", p, r.Version, Version)
	case r.ID != e.id:
		return nil, fmt.Errorf("%s: damaged record skipped: it names build %q", p, r.ID)
	}
	return &r, nil
}

// ErrNotFound is returned when no build matches.
var ErrNotFound = errors.New("no such build in the history")

// resolve picks the entry ref names: "latest" the newest, else the build whose ID is ref or the
// only one that starts with it.
func resolve(ents []entry, ref string) (entry, error) {
	if ref == "latest" {
		if len(ents) == 0 {
			return entry{}, fmt.Errorf("%w: no build recorded yet", ErrNotFound)
		}
		return ents[0], nil
	}
	ref = strings.ToLower(ref)
	var match []entry
	for _, e := range ents {
		if e.id == ref {
			return e, nil
		}
		if ref != "" && strings.HasPrefix(e.id, ref) {
			match = append(match, e)
		}
	}
	switch len(match) {
	case 0:
		return entry{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
	case 1:
		return match[0], nil
	}
	return entry{}, fmt.Errorf("build ID prefix %s is ambiguous: it matches %d builds", ref, len(match))
}

// Find returns the build ref names: a full ID, a unique ID prefix, or "latest" / "" for the
// newest build. The newest build whose record is damaged is skipped (and named in skipped), so
// "latest" is the newest one that can be read.
func Find(root, ref string) (r *Record, skipped []string, err error) {
	ents, err := entries(root)
	if err != nil {
		return nil, nil, err
	}
	if ref == "" || ref == "latest" {
		for _, e := range ents {
			r, err := read(root, e)
			if err == nil {
				return r, skipped, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				skipped = append(skipped, err.Error())
			}
		}
		return nil, skipped, fmt.Errorf("%w: no build recorded yet", ErrNotFound)
	}
	e, err := resolve(ents, ref)
	if err != nil {
		return nil, nil, err
	}
	r, err = read(root, e)
	return r, nil, err
}

// Remove deletes the builds refs name (as Find reads them) and returns their IDs. It stops at
// the first ref that names no build, or more than one.
func Remove(root string, refs ...string) ([]string, error) {
	ents, err := entries(root)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, ref := range refs {
		e, err := resolve(ents, ref)
		if err != nil {
			return removed, err
		}
		if err := os.Remove(filepath.Join(Dir(root), e.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("build history: remove %s: %w", e.id, err)
		}
		removed = append(removed, e.id)
		ents = slices.DeleteFunc(ents, func(x entry) bool { return x.name == e.name })
	}
	return removed, nil
}

// staleTemp is how old a temp file must be before Prune takes it for a killed writer's: a live
// writer holds one for milliseconds.
const staleTemp = time.Hour

// Prune keeps the keep newest builds (keep ≥ 0) and removes the rest, damaged records included,
// with temp files killed writers left. Several processes may prune at once: each removes only
// names older than the keep newest it saw, and a name already gone is not an error.
func Prune(root string, keep int) (int, error) {
	if keep < 0 {
		return 0, fmt.Errorf("build history: keep %d: want 0 or more", keep)
	}
	ents, err := entries(root)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents[min(keep, len(ents)):] {
		err := os.Remove(filepath.Join(Dir(root), e.name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("build history: remove %s: %w", e.id, err)
		}
		if err == nil {
			n++
		}
	}
	if tmps, err := os.ReadDir(Dir(root)); err == nil {
		for _, t := range tmps {
			if !strings.HasPrefix(t.Name(), tmpPrefix) {
				continue
			}
			if fi, err := t.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
				os.Remove(filepath.Join(Dir(root), t.Name()))
			}
		}
	}
	return n, nil
}
