package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/atomicfile"
	"github.com/strata-build/strata/internal/fileindex"
)

// ---- snapshot file indexes and the last layer of each step position ----
//
// A COPY that runs again after an edit hard-links the files that did not change from the
// snapshot its step position produced last (copier.Links). For that the store remembers, per
// position, the layer the step gave last (records/<position hash>.layer, beside the position's
// input summary), and per snapshot a file index: the digest of each regular file the copy wrote
// (snapfiles/<diffID hex>). Both are cache: a missing or damaged one costs a copy, never a
// wrong file (an index is checksummed; the copier also checks each linked file's metadata). An
// index describes a snapshot's content, which its diffID fixes, so it stays true for a snapshot
// unpacked again from the blob; GC drops it with its snapshot, and `store verify` checks every
// indexed file against its digest, so a snapshot changed on disk is found before a link spreads
// it.

func (s *Store) fileIndexPath(diffID digest.Digest) string {
	return filepath.Join(s.root, "snapfiles", diffID.Encoded())
}

// FileIndex returns the file index of diffID's snapshot (fs.ErrNotExist when there is none).
func (s *Store) FileIndex(diffID digest.Digest) (fileindex.Index, error) {
	if diffID.Validate() != nil {
		return nil, fs.ErrNotExist
	}
	data, err := os.ReadFile(s.fileIndexPath(diffID))
	if err != nil {
		return nil, err
	}
	idx, err := fileindex.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("file index of %s: %w", diffID, err)
	}
	return idx, nil
}

// PutFileIndex stores the file index of diffID's snapshot. It is written without fsync: its
// checksum turns a write a crash cut short into a missing index.
func (s *Store) PutFileIndex(diffID digest.Digest, idx fileindex.Index) error {
	if err := diffID.Validate(); err != nil {
		return fmt.Errorf("file index: %w", err)
	}
	data, err := fileindex.Encode(idx)
	if err != nil {
		return err
	}
	return writeNoSync(s.tmpDir, s.fileIndexPath(diffID), data)
}

func (s *Store) lastLayerPath(position string) string {
	return filepath.Join(s.root, "records", hashName(position)+".layer")
}

// LastLayer returns the layer a COPY/ADD at this step position gave the last time it ran or hit.
func (s *Store) LastLayer(position string) (digest.Digest, error) {
	data, err := os.ReadFile(s.lastLayerPath(position))
	if err != nil {
		return "", err
	}
	d, err := digest.Parse(strings.TrimSpace(string(data)))
	if err != nil {
		return "", fs.ErrNotExist
	}
	return d, nil
}

// SetLastLayer records the layer a COPY/ADD at this position gave; it writes only on a change.
func (s *Store) SetLastLayer(position string, d digest.Digest) error {
	if prev, err := s.LastLayer(position); err == nil && prev == d {
		return nil
	}
	return writeNoSync(s.tmpDir, s.lastLayerPath(position), []byte(d.String()))
}

// writeNoSync replaces p with data without fsync (through the scratch dir, so a kill leaves no
// temp file beside p), for cache files whose loss costs nothing but time.
func writeNoSync(dir, p string, data []byte) error {
	return atomicfile.Write(p, data, atomicfile.Options{Scratch: dir, NoSync: true})
}

// sweepFileIndexes removes the file indexes whose snapshot is gone (GC, verify).
func (s *Store) sweepFileIndexes() {
	ents, _ := os.ReadDir(filepath.Join(s.root, "snapfiles"))
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, ".tmp-") && validKey(name) {
			if _, err := os.Lstat(filepath.Join(s.root, "snapshots", name)); !errors.Is(err, fs.ErrNotExist) {
				continue
			}
		}
		os.Remove(filepath.Join(s.root, "snapfiles", name))
	}
}

// orphanLastLayer says why the position pointer records/NAME.layer at p is of no use ("" when
// it may be): it does not parse, or its layer record is gone (the snapshot itself may be missing
// while the layer is kept: a cache hit on a lazy layer, unpacked when needed).
func (s *Store) orphanLastLayer(p string) string {
	data, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	d, err := digest.Parse(strings.TrimSpace(string(data)))
	if err != nil {
		return "not a layer pointer"
	}
	if _, err := os.Lstat(s.layerPath(d)); errors.Is(err, fs.ErrNotExist) {
		return "its layer " + d.String() + " is gone"
	}
	return ""
}

// sweepLastLayers removes the position pointers orphanLastLayer finds useless (GC).
func (s *Store) sweepLastLayers() {
	dir := filepath.Join(s.root, "records")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if p := filepath.Join(dir, e.Name()); strings.HasSuffix(e.Name(), ".layer") && s.orphanLastLayer(p) != "" {
			os.Remove(p)
		}
	}
}
