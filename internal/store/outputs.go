package store

import (
	"os"
	"path/filepath"
)

// Output memos (outputs/HASH, one per output path) let an export tell that an archive it wrote
// earlier is still exactly what it would write, from one stat instead of reading it back (see
// export.WriteFileIfChanged for what a memo holds and when it is trusted). They are cache: a lost
// or torn memo costs one byte-for-byte compare of the archive.

func (s *Store) outputMemoPath(dest string) string {
	return filepath.Join(s.root, "outputs", hashName(dest))
}

// OutputMemo returns the memo recorded for an output path, or "".
func (s *Store) OutputMemo(dest string) string {
	b, err := os.ReadFile(s.outputMemoPath(dest))
	if err != nil {
		return ""
	}
	return string(b)
}

// SetOutputMemo records the memo of an output path.
func (s *Store) SetOutputMemo(dest, memo string) error {
	if s.tmpDir == "" {
		return nil // a read-only open
	}
	return writeUnsynced(s.tmpDir, s.outputMemoPath(dest), []byte(memo))
}
