package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Output memos (outputs/HASH, one per output path) let an export tell that an archive it wrote
// earlier is still exactly what it would write, from one stat instead of reading it back (see
// export.WriteFileIfChanged for what a memo holds and when it is trusted). They are cache: a lost
// or torn memo costs one byte-for-byte compare of the archive. A memo file holds its output path
// on the first line, so GC and verify can drop the memo of an output that is gone (a memo file
// without it, from before, reads as no memo).

func (s *Store) outputMemoPath(dest string) string {
	return filepath.Join(s.root, "outputs", hashName(dest))
}

// OutputMemo returns the memo recorded for an output path, or "".
func (s *Store) OutputMemo(dest string) string {
	b, err := os.ReadFile(s.outputMemoPath(dest))
	if err != nil {
		return ""
	}
	path, memo, ok := strings.Cut(string(b), "\n")
	if !ok || path != dest {
		return ""
	}
	return memo
}

// SetOutputMemo records the memo of an output path.
func (s *Store) SetOutputMemo(dest, memo string) error {
	if s.tmpDir == "" {
		return nil // a read-only open
	}
	return writeUnsynced(s.tmpDir, s.outputMemoPath(dest), []byte(dest+"\n"+memo))
}

// orphanOutputMemo says why the memo file p is of no use ("" when it may be): it does not parse,
// or the output it describes no longer exists.
func orphanOutputMemo(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	dest, _, ok := strings.Cut(string(b), "\n")
	if !ok || !filepath.IsAbs(dest) || filepath.Base(p) != hashName(dest) {
		return "not an output memo"
	}
	if _, err := os.Lstat(dest); errors.Is(err, fs.ErrNotExist) {
		return "its output " + dest + " is gone"
	}
	return ""
}

// sweepOutputMemos removes the memos orphanOutputMemo finds useless (GC).
func (s *Store) sweepOutputMemos() {
	dir := filepath.Join(s.root, "outputs")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") || orphanOutputMemo(p) != "" {
			os.Remove(p)
		}
	}
}
