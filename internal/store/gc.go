package store

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// UsageEntry is one line of `strata du`.
type UsageEntry struct {
	Kind  string
	Count int
	Size  int64
}

// Usage sums the store by kind.
func (s *Store) Usage() ([]UsageEntry, error) {
	var out []UsageEntry
	for _, k := range []struct{ kind, dir string }{
		{"blobs", "blobs/sha256"}, {"snapshots", "snapshots"}, {"cache records", "cache"}, {"cache mounts", "cachemounts"},
	} {
		ents, err := os.ReadDir(filepath.Join(s.root, k.dir))
		if err != nil {
			return nil, err
		}
		e := UsageEntry{Kind: k.kind, Count: len(ents)}
		filepath.WalkDir(filepath.Join(s.root, k.dir), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					e.Size += info.Size()
				}
			}
			return nil
		})
		out = append(out, e)
	}
	return out, nil
}

// RecordInfo is a cache record with its last use.
type RecordInfo struct {
	Record
	LastUsed time.Time
}

// Records lists cache records, most recently used first.
func (s *Store) Records() ([]RecordInfo, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "cache"))
	if err != nil {
		return nil, err
	}
	var out []RecordInfo
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		var r Record
		if readJSON(filepath.Join(s.root, "cache", e.Name()), &r) != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, RecordInfo{Record: r, LastUsed: info.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// PruneOptions select what prune removes besides the build cache.
type PruneOptions struct {
	All bool // also cache mounts and remembered remote resolutions
}

// Prune removes every cache record and then every blob, layer and snapshot no tag reaches. It
// needs the store opened exclusively, so no build is running.
func (s *Store) Prune(o PruneOptions) (int64, error) {
	var freed int64
	rm := func(p string) {
		filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					freed += info.Size()
				}
			}
			return nil
		})
		os.RemoveAll(p)
	}
	for _, dir := range []string{"cache", "records"} {
		ents, _ := os.ReadDir(filepath.Join(s.root, dir))
		for _, e := range ents {
			rm(filepath.Join(s.root, dir, e.Name()))
		}
	}
	if o.All {
		for _, dir := range []string{"cachemounts", "resolved", "statcache"} {
			ents, _ := os.ReadDir(filepath.Join(s.root, dir))
			for _, e := range ents {
				rm(filepath.Join(s.root, dir, e.Name()))
			}
		}
	}
	// Mark what tags reach.
	keepBlobs := map[string]bool{}
	keepDiffs := map[string]bool{}
	tags, err := s.Tags()
	if err != nil {
		return freed, err
	}
	for _, d := range tags {
		s.markImage(d, keepBlobs, keepDiffs)
	}
	if !o.All {
		ents, _ := os.ReadDir(filepath.Join(s.root, "resolved"))
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(s.root, "resolved", e.Name()))
			if err != nil {
				continue
			}
			if d, err := digest.Parse(strings.TrimSpace(string(data))); err == nil {
				s.markImage(d, keepBlobs, keepDiffs)
			}
		}
	}
	// Sweep.
	ents, _ := os.ReadDir(filepath.Join(s.root, "layers"))
	for _, e := range ents {
		hex := strings.TrimSuffix(e.Name(), ".json")
		if !keepDiffs[hex] {
			rm(filepath.Join(s.root, "layers", e.Name()))
		}
	}
	ents, _ = os.ReadDir(filepath.Join(s.root, "snapshots"))
	for _, e := range ents {
		if !keepDiffs[e.Name()] {
			rm(filepath.Join(s.root, "snapshots", e.Name()))
		}
	}
	ents, _ = os.ReadDir(filepath.Join(s.root, "blobs", "sha256"))
	for _, e := range ents {
		if !keepBlobs[e.Name()] {
			rm(filepath.Join(s.root, "blobs", "sha256", e.Name()))
		}
	}
	return freed, nil
}

func (s *Store) markImage(d digest.Digest, blobs, diffs map[string]bool) {
	data, err := s.ReadBlob(d)
	if err != nil {
		return
	}
	blobs[d.Encoded()] = true
	var m ocispec.Manifest
	if json.Unmarshal(data, &m) != nil {
		return
	}
	blobs[m.Config.Digest.Encoded()] = true
	for _, l := range m.Layers {
		blobs[l.Digest.Encoded()] = true
	}
	if cd, err := s.ReadBlob(m.Config.Digest); err == nil {
		var c ocispec.Image
		if json.Unmarshal(cd, &c) == nil {
			for _, id := range c.RootFS.DiffIDs {
				diffs[id.Encoded()] = true
			}
		}
	}
}
