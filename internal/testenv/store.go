// Package testenv builds real fixtures for strata's tests: a busybox root filesystem and OCI image made
// from the host's static busybox, a throwaway docker-registry on loopback, and a directory blob store.
// Everything returns errors instead of taking *testing.T so TestMain can use it; the T helpers are
// thin wrappers that skip when a tool is missing.
package testenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// DirStore is a content-addressed blob directory shaped like an OCI layout's blobs/ (ROOT/blobs/sha256/HEX),
// so an OCI layout directory is also a DirStore. It stands in for strata's store in tests.
type DirStore struct {
	Root string
}

// NewDirStore returns a store rooted at root, creating it if needed.
func NewDirStore(root string) (*DirStore, error) {
	if err := os.MkdirAll(filepath.Join(root, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("create blob store %s: %w", root, err)
	}
	return &DirStore{Root: root}, nil
}

// Path returns where the blob d lives (or would live).
func (s *DirStore) Path(d digest.Digest) string {
	return filepath.Join(s.Root, "blobs", d.Algorithm().String(), d.Encoded())
}

// Has reports whether d is stored.
func (s *DirStore) Has(d digest.Digest) bool {
	if d.Validate() != nil {
		return false
	}
	_, err := os.Stat(s.Path(d))
	return err == nil
}

// Open opens the blob d.
func (s *DirStore) Open(d digest.Digest) (io.ReadCloser, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	return os.Open(s.Path(d))
}

// Ingest stores r under d through a temp file and rename, refusing content whose digest is not d.
func (s *DirStore) Ingest(d digest.Digest, r io.Reader) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if s.Has(d) {
		return nil
	}
	dst := s.Path(d)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".ingest-*")
	if err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	defer os.Remove(tmp.Name())
	v := d.Verifier()
	if _, err := io.Copy(io.MultiWriter(tmp, v), r); err != nil {
		tmp.Close()
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	if !v.Verified() {
		return fmt.Errorf("ingest %s: %w", d, errDigestMismatch)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	return nil
}

var errDigestMismatch = errors.New("content does not match digest")
