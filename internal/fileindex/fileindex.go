// Package fileindex is the content digest of each regular file a COPY wrote into a snapshot, by
// path: what lets a later run of the same COPY take the files that did not change from that
// snapshot by hard link instead of copying their bytes (copier.Links). The store keeps one per
// snapshot; the encoding is compact (paths front-coded) and checksummed, so a damaged or cut file
// decodes as an error, never as a wrong digest.
package fileindex

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
)

// Index maps a snapshot path (slash-separated, relative to the snapshot root, clean) to the
// sha256 of the regular file there.
type Index map[string][32]byte

// MaxEntries bounds an index (262,144 files, above the 200,000 of the largest benchmark
// context): a COPY of more files keeps none, and its next run copies every file as without one,
// so a million-file COPY --from holds at most this many entries (≈ 30 MB) on top of its selection.
const MaxEntries = 1 << 18

const magic = "strata.fileindex.v1\n"

var errDamaged = errors.New("file index damaged")

// Encode serializes idx: the magic, the entry count, then for each path in byte order the length
// of the prefix it shares with the previous path, the rest of it and the digest, and last the
// sha256 of everything before.
func Encode(idx Index) ([]byte, error) {
	if len(idx) > MaxEntries {
		return nil, fmt.Errorf("file index: %d entries, more than %d", len(idx), MaxEntries)
	}
	paths := make([]string, 0, len(idx))
	for p := range idx {
		if !validPath(p) {
			return nil, fmt.Errorf("file index: bad path %q", p)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	buf.WriteString(magic)
	var num [binary.MaxVarintLen64]byte
	uv := func(n int) { buf.Write(num[:binary.PutUvarint(num[:], uint64(n))]) }
	uv(len(paths))
	prev := ""
	for _, p := range paths {
		shared := 0
		for shared < len(p) && shared < len(prev) && p[shared] == prev[shared] {
			shared++
		}
		uv(shared)
		uv(len(p) - shared)
		buf.WriteString(p[shared:])
		sum := idx[p]
		buf.Write(sum[:])
		prev = p
	}
	h := sha256.Sum256(buf.Bytes())
	buf.Write(h[:])
	return buf.Bytes(), nil
}

// Decode parses what Encode wrote; anything else is an error.
func Decode(data []byte) (Index, error) {
	if len(data) < len(magic)+sha256.Size || !bytes.HasPrefix(data, []byte(magic)) {
		return nil, errDamaged
	}
	body, tail := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:], tail) {
		return nil, fmt.Errorf("%w: checksum mismatch", errDamaged)
	}
	r := body[len(magic):]
	uv := func() (int, error) {
		n, k := binary.Uvarint(r)
		if k <= 0 || n > uint64(len(data)) {
			return 0, errDamaged
		}
		r = r[k:]
		return int(n), nil
	}
	count, err := uv()
	if err != nil || count > MaxEntries {
		return nil, errDamaged
	}
	idx := make(Index, count)
	prev := ""
	for i := 0; i < count; i++ {
		shared, err := uv()
		if err != nil {
			return nil, err
		}
		rest, err := uv()
		if err != nil {
			return nil, err
		}
		if shared > len(prev) || rest > len(r) || len(r)-rest < sha256.Size {
			return nil, errDamaged
		}
		p := prev[:shared] + string(r[:rest])
		r = r[rest:]
		if !validPath(p) || p <= prev {
			return nil, fmt.Errorf("%w: bad or unordered path %q", errDamaged, p)
		}
		var sum [32]byte
		copy(sum[:], r)
		r = r[sha256.Size:]
		idx[p] = sum
		prev = p
	}
	if len(r) != 0 {
		return nil, errDamaged
	}
	return idx, nil
}

// validPath accepts clean, relative, slash-separated paths below the root.
func validPath(p string) bool {
	return p != "" && p != "." && !strings.HasPrefix(p, "/") && !strings.ContainsRune(p, 0) &&
		path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../")
}
