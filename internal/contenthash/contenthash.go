// Package contenthash decides exactly which files a COPY/ADD reads and computes the checksum the
// solver puts in the step's cache key. The checksum covers what ends up in the layer (relative
// path, type, permission bits, symlink target, content, owners for stage sources) and nothing that
// varies between two checkouts of the same tree (mtime, inode, absolute path, host uid/gid).
package contenthash

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"sort"
	"strconv"

	digest "github.com/opencontainers/go-digest"
)

// File is one entry a COPY will create: a regular file, directory, symlink or special file.
type File struct {
	Path   string      // slash-separated, relative to the source root, e.g. "src/app.js"
	Mode   fs.FileMode // type bits + permission bits (+setuid/setgid/sticky)
	hashed bool        // sum holds the content's sha256 (regular files, once hashed)
	Size   int64
	Link   string // symlink target as stored (never followed)
	// sum is kept as raw bytes rather than a digest.Digest string: a selection of a million
	// files holds a million of them, and the string form costs 80 bytes more each.
	sum [32]byte
	UID int // only when Source.Owners; 0 otherwise
	GID int
	// HardLink is, for a regular file that shares its inode with another selected file, the
	// path of the first of them (in Files order); "" otherwise. The copier recreates the link,
	// as BuildKit does (case copy-hardlinks).
	HardLink string
}

// Digest is the content sha256 of a regular file, "" for other entries.
func (f File) Digest() digest.Digest {
	if !f.hashed {
		return ""
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(f.sum[:]))
}

// Match records what one COPY source pattern resolved to.
type Match struct {
	Pattern string // the source as written in the Dockerfile
	Path    string // matched path relative to the root, as named (a top-level symlink keeps its own name)
	IsDir   bool
	// Target is Path with its symlinks resolved inside the root; the entries copied for this match are
	// the Files at or under Target. Equal to Path when no symlink was involved.
	Target string
}

// Selection is the outcome of Select: what to copy and its checksum.
type Selection struct {
	Matches []Match
	Files   []File // sorted by Path, deduplicated; includes the ancestors of every match
	Digest  digest.Digest
}

// Under returns the Files at or below the given relative path. Files are in path-component order,
// so a subtree is one contiguous range.
func (s *Selection) Under(rel string) []File {
	if rel == "." || rel == "" {
		return s.Files
	}
	lo := sort.Search(len(s.Files), func(i int) bool { return !pathLess(s.Files[i].Path, rel) })
	hi := lo
	for hi < len(s.Files) && (s.Files[hi].Path == rel || hasDirPrefix(s.Files[hi].Path, rel)) {
		hi++
	}
	return s.Files[lo:hi]
}

// pathLess orders paths component by component (as if '/' sorted before every other byte), so a
// directory is immediately followed by its whole subtree: plain string order would put "a.txt"
// between "a" and "a/x".
func pathLess(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return true
		}
		if cb == '/' {
			return false
		}
		return ca < cb
	}
	return len(a) < len(b)
}

// pathCompare is pathLess as a three-way comparison.
func pathCompare(a, b string) int {
	switch {
	case a == b:
		return 0
	case pathLess(a, b):
		return -1
	default:
		return 1
	}
}

func hasDirPrefix(p, dir string) bool {
	return len(p) > len(dir) && p[len(dir)] == '/' && p[:len(dir)] == dir
}

// digestFormat is bumped whenever the canonical encoding changes, so old keys can never collide
// with new ones.
const digestFormat = "strata.contenthash.v1"

func computeDigest(matches []Match, files []File, owners bool) digest.Digest {
	h := sha256.New()
	// Every record has a fixed number of NUL-terminated fields; paths cannot contain NUL, so the
	// encoding is unambiguous without escaping. Fields are appended to one buffer hashed in
	// large writes: a selection of 200,000 files would otherwise make a million small writes
	// and as many little strings.
	buf := make([]byte, 0, 64<<10)
	flush := func() {
		h.Write(buf)
		buf = buf[:0]
	}
	field := func(s string) {
		buf = append(buf, s...)
		buf = append(buf, 0)
	}
	field(digestFormat)
	field(strconv.FormatBool(owners))
	for _, m := range matches {
		field("M")
		field(m.Pattern)
		field(m.Path)
		field(m.Target)
		field(strconv.FormatBool(m.IsDir))
	}
	for i := range files {
		f := &files[i]
		if len(buf) > cap(buf)-4<<10 {
			flush()
		}
		field("F")
		field(f.Path)
		field(typeChar(f.Mode))
		buf = strconv.AppendUint(buf, uint64(unixPerm(f.Mode)), 8)
		buf = append(buf, 0)
		field(f.Link)
		if f.hashed {
			// digest.Digest's string form, "sha256:<hex>", without making the string.
			buf = append(buf, "sha256:"...)
			buf = hex.AppendEncode(buf, f.sum[:])
		}
		buf = append(buf, 0)
		if owners {
			buf = strconv.AppendInt(buf, int64(f.UID), 10)
			buf = append(buf, ':')
			buf = strconv.AppendInt(buf, int64(f.GID), 10)
			buf = append(buf, 0)
		}
		if f.HardLink != "" {
			// An optional record after the file's fixed fields: its tag is neither "F" nor
			// "M", so the encoding stays unambiguous, and selections without hard links keep
			// the digest they always had.
			field("H")
			field(f.HardLink)
		}
	}
	flush()
	return digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil))
}

func typeChar(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "d"
	case m&fs.ModeSymlink != 0:
		return "l"
	case m&fs.ModeNamedPipe != 0:
		return "p"
	case m&fs.ModeSocket != 0:
		return "s"
	case m&fs.ModeCharDevice != 0:
		return "c"
	case m&fs.ModeDevice != 0:
		return "b"
	default:
		return "f"
	}
}

// unixPerm maps Go's mode bits to the Unix 12-bit permission word, so setuid/setgid/sticky are
// part of the key (they change what the layer does).
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

func normalizePerm(m fs.FileMode) fs.FileMode {
	typ := m.Type()
	switch {
	case m.IsDir():
		return typ | 0o755
	case typ == 0:
		if m&0o111 != 0 {
			return 0o755
		}
		return 0o644
	default:
		return m
	}
}

func (f File) String() string {
	return fmt.Sprintf("%s %s %o %s", f.Path, typeChar(f.Mode), unixPerm(f.Mode), f.Digest())
}
