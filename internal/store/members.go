package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/atomicfile"
)

// Member indexes (internal/layerblob) live in members/: members/BLOBHEX is the index of the
// gzip members of that layer blob, and members/pos-HASH names the last blob a step position
// committed, the blob whose members the position's next commit tries to copy. Both are cache:
// a missing or damaged file only costs compressing the next layer in full. GC removes an index
// with its blob, and a position pointer whose blob is gone.

const lastBlobPrefix = "pos-"

func (s *Store) membersPath(blob digest.Digest) string {
	return filepath.Join(s.root, "members", blob.Encoded())
}

// PutMembers stores the encoded member index of a blob.
func (s *Store) PutMembers(blob digest.Digest, index []byte) error {
	if err := blob.Validate(); err != nil {
		return err
	}
	return writeUnsynced(s.tmpDir, s.membersPath(blob), index)
}

// Members returns the encoded member index of a blob.
func (s *Store) Members(blob digest.Digest) ([]byte, error) {
	if err := blob.Validate(); err != nil {
		return nil, err
	}
	return os.ReadFile(s.membersPath(blob))
}

// SetLastBlob remembers the layer blob a step position committed last.
func (s *Store) SetLastBlob(position string, blob digest.Digest) error {
	p := filepath.Join(s.root, "members", lastBlobPrefix+hashName(position))
	if old, err := os.ReadFile(p); err == nil && string(old) == blob.String() {
		return nil
	}
	return writeUnsynced(s.tmpDir, p, []byte(blob.String()))
}

// LastBlob returns the blob SetLastBlob remembered for a position.
func (s *Store) LastBlob(position string) (digest.Digest, error) {
	return readBlobPointer(filepath.Join(s.root, "members", lastBlobPrefix+hashName(position)))
}

// sweepMembers removes indexes and position pointers whose blob has no reference left (refs as
// in sweep, "blob:HEX") or is not in the store.
func (s *Store) sweepMembers(refs map[string]int) {
	dir := filepath.Join(s.root, "members")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		hex := e.Name()
		if strings.HasPrefix(hex, lastBlobPrefix) {
			d, err := readBlobPointer(p)
			if err != nil {
				os.Remove(p)
				continue
			}
			hex = d.Encoded()
		}
		if strings.HasPrefix(e.Name(), ".tmp-") || refs["blob:"+hex] == 0 {
			os.Remove(p)
		}
	}
}

// readBlobPointer reads one position pointer file.
func readBlobPointer(p string) (digest.Digest, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return digest.Parse(strings.TrimSpace(string(data)))
}

// writeUnsynced replaces path with data without fsync: member files and output memos are
// cache, and a file a crash leaves empty or torn fails to parse (an index carries its own
// checksum; a pointer must parse as a digest and name a present blob), which costs one full
// compression or one compare, never a wrong answer. Two fsyncs per committed layer would not.
func writeUnsynced(scratch, path string, data []byte) error {
	if err := atomicfile.Write(path, data, atomicfile.Options{Scratch: scratch, NoSync: true}); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
