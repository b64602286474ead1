package snapshot

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// DiffResult describes a layer produced by Diff.
type DiffResult struct {
	// ContentID hashes every entry's path, type, mode, owner, size, content, link target, device
	// numbers and xattrs, in tar order, but no timestamps: the same change made at another time has
	// the same ContentID even though the tar (and so its digest) differs.
	ContentID digest.Digest
	Empty     bool // the upper dir had no entries
	Entries   int  // tar entries written, whiteout and opaque markers included
}

// contentIDVersion is hashed first so that changing what goes into a ContentID never collides with
// IDs recorded by an older strata.
const contentIDVersion = "strata.snapshot.contentid.v1\x00"

type diffEntry struct {
	key     string // sort key; see diffEntries
	rel     string // path inside upper
	hdr     *tar.Header
	content bool      // a regular file whose bytes follow the header
	ino     [2]uint64 // device and inode, set when the file has other links
}

// Diff writes the overlay upper directory upper as a layer tar to w. Entries are sorted by path
// (parents before children, a directory's opaque marker first among its children), in PAX format
// with numeric owners only, mtimes truncated to seconds and no atime/ctime, so the same upperdir
// always yields the same bytes. 0/0 character devices become `.wh.NAME` entries, opaque directories
// gain `DIR/.wh..wh..opq`, and inodes linked several times within upper become tar hardlinks.
//
// Only user.*, security.capability and POSIX ACL xattrs are written: trusted.overlay.* and
// user.overlay.* are overlay bookkeeping and other namespaces (security.selinux, trusted.*) describe the host, not the image.
// A redirect or metacopy xattr means the upper cannot be read on its own, so Diff refuses it; Mount
// turns both features off so they should never appear.
func Diff(upper string, w io.Writer) (DiffResult, error) {
	var entries []diffEntry
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		es, err := diffEntries(p, filepath.ToSlash(rel))
		if err != nil {
			return fmt.Errorf("diff %s: %w", rel, err)
		}
		entries = append(entries, es...)
		return nil
	})
	if err != nil {
		return DiffResult{}, fmt.Errorf("diff %s: %w", upper, err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })

	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	id := sha256.New()
	id.Write([]byte(contentIDVersion))
	links := map[[2]uint64]string{}
	copyBuf := new([64 << 10]byte)
	for i := range entries {
		if err := writeEntry(tw, id, upper, &entries[i], links, copyBuf); err != nil {
			return DiffResult{}, fmt.Errorf("diff %s: %w", entries[i].hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return DiffResult{}, fmt.Errorf("diff %s: close tar: %w", upper, err)
	}
	if err := bw.Flush(); err != nil {
		return DiffResult{}, fmt.Errorf("diff %s: write tar: %w", upper, err)
	}
	return DiffResult{
		ContentID: digest.NewDigest(digest.SHA256, id),
		Empty:     len(entries) == 0,
		Entries:   len(entries),
	}, nil
}

// diffEntries builds the tar entries for one upper path. Sort keys are the cleaned path, except the
// opaque marker, whose key ("DIR/\x00") puts it before every other child of DIR: an applier that
// clears the directory on the marker must see it before the children of this same layer.
func diffEntries(p, rel string) ([]diffEntry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, err
	}
	xattrs, overlay, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"trusted.overlay.redirect", "trusted.overlay.metacopy"} {
		if _, ok := overlay[k]; ok {
			return nil, fmt.Errorf("has %s: overlay was mounted with redirect_dir or metacopy on, which Diff cannot represent", k)
		}
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
		Format:  tar.FormatPAX,
	}
	if len(xattrs) > 0 {
		hdr.PAXRecords = map[string]string{}
		for k, v := range xattrs {
			hdr.PAXRecords[paxXattrPrefix+k] = v
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name = rel + "/"
		out := []diffEntry{{key: rel, rel: rel, hdr: hdr}}
		if overlay[xattrOpaque] == "y" {
			out = append(out, diffEntry{key: rel + "/\x00", rel: rel, hdr: &tar.Header{
				Typeflag: tar.TypeReg,
				Name:     rel + "/" + whiteoutOpaque,
				Uid:      hdr.Uid,
				Gid:      hdr.Gid,
				ModTime:  hdr.ModTime,
				Format:   tar.FormatPAX,
			}})
		}
		return out, nil
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		e := diffEntry{key: rel, rel: rel, hdr: hdr, content: true}
		if st.Nlink > 1 {
			e.ino = [2]uint64{st.Dev, st.Ino}
		}
		return []diffEntry{e}, nil
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			dir, name := path.Split(rel)
			hdr.Typeflag = tar.TypeReg
			hdr.Name = dir + whiteoutPrefix + name
			hdr.PAXRecords = nil
			return []diffEntry{{key: hdr.Name, rel: rel, hdr: hdr}}, nil
		}
		hdr.Typeflag = tar.TypeChar
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		hdr.Typeflag = tar.TypeBlock
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		// Sockets have no tar representation and are meaningless once the process is gone.
		return nil, nil
	default:
		return nil, fmt.Errorf("unsupported file type %o", st.Mode&unix.S_IFMT)
	}
	return []diffEntry{{key: rel, rel: rel, hdr: hdr}}, nil
}

// onlyReader hides os.File's WriterTo, whose generic fallback allocates a fresh buffer per file.
type onlyReader struct{ io.Reader }

func writeEntry(tw *tar.Writer, id hash.Hash, upper string, e *diffEntry, links map[[2]uint64]string, copyBuf *[64 << 10]byte) error {
	hdr := e.hdr
	var f *os.File
	if e.content {
		multi := e.ino != [2]uint64{}
		if first, ok := links[e.ino]; ok && multi {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			hdr.Size = 0
		} else {
			if multi {
				links[e.ino] = hdr.Name
			}
			var err error
			f, err = os.Open(filepath.Join(upper, e.rel))
			if err != nil {
				return err
			}
			defer f.Close()
		}
	}

	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	var sum digest.Digest
	if f != nil {
		h := sha256.New()
		n, err := io.CopyBuffer(io.MultiWriter(tw, h), onlyReader{f}, copyBuf[:])
		if err != nil {
			return fmt.Errorf("copy content: %w", err)
		}
		if n != hdr.Size {
			return fmt.Errorf("file changed size while reading (%d, expected %d)", n, hdr.Size)
		}
		sum = digest.NewDigest(digest.SHA256, h)
	}
	hashEntry(id, hdr, sum)
	return nil
}

// hashEntry feeds one entry into the ContentID as length-prefixed fields, so no choice of names or
// xattr values can make two different entry lists serialize the same.
func hashEntry(h hash.Hash, hdr *tar.Header, sum digest.Digest) {
	var buf [8]byte
	str := func(s string) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		io.WriteString(h, s)
	}
	num := func(n int64) {
		binary.BigEndian.PutUint64(buf[:], uint64(n))
		h.Write(buf[:])
	}
	str(hdr.Name)
	num(int64(hdr.Typeflag))
	num(hdr.Mode)
	num(int64(hdr.Uid))
	num(int64(hdr.Gid))
	num(hdr.Size)
	str(string(sum))
	str(hdr.Linkname)
	num(hdr.Devmajor)
	num(hdr.Devminor)
	keys := sortedKeys(hdr.PAXRecords)
	num(int64(len(keys)))
	for _, k := range keys {
		str(k)
		str(hdr.PAXRecords[k])
	}
}

// keepXattr says which xattrs belong in a layer.
func keepXattr(name string) bool {
	return strings.HasPrefix(name, "user.") && !strings.HasPrefix(name, userOverlayXattrNS) ||
		name == "security.capability" ||
		name == "system.posix_acl_access" ||
		name == "system.posix_acl_default"
}

// readXattrs returns the xattrs to put into the tar and, separately, the overlay ones (named
// trusted.overlay.* whichever namespace the overlay used).
func readXattrs(p string) (keep, overlay map[string]string, err error) {
	names, err := listXattrs(p)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range names {
		key, isOverlay := overlayXattr(name)
		if !isOverlay && !keepXattr(name) {
			continue
		}
		val, err := getXattr(p, name)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return nil, nil, fmt.Errorf("get xattr %s: %w", name, err)
		}
		if isOverlay {
			if overlay == nil {
				overlay = map[string]string{}
			}
			overlay[key] = string(val)
			continue
		}
		if keep == nil {
			keep = map[string]string{}
		}
		keep[name] = string(val)
	}
	return keep, overlay, nil
}

func listXattrs(p string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			size, err := unix.Llistxattr(p, nil)
			if err != nil {
				return nil, fmt.Errorf("list xattrs: %w", err)
			}
			buf = make([]byte, size+64)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list xattrs: %w", err)
		}
		var names []string
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if name != "" {
				names = append(names, name)
			}
		}
		return names, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 128)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			size, err := unix.Lgetxattr(p, name, nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, size+64)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
