package snapshot

import (
	"archive/tar"
	"bufio"
	"container/heap"
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
	ew, _ := w.(EntryWriter)
	var bw *bufio.Writer
	tw := tar.NewWriter(w)
	if ew == nil {
		bw = bufio.NewWriterSize(w, 1<<20)
		tw = tar.NewWriter(bw)
	}
	id := sha256.New()
	id.Write([]byte(contentIDVersion))
	links := map[[2]uint64]string{}
	copyBuf := new([64 << 10]byte)
	n := 0
	err := walkSorted(upper, func(e *diffEntry) error {
		n++
		if err := writeEntry(tw, ew, id, upper, e, links, copyBuf); err != nil {
			return fmt.Errorf("diff %s: %w", e.hdr.Name, err)
		}
		return nil
	})
	if err != nil {
		return DiffResult{}, err
	}
	if err := tw.Close(); err != nil {
		return DiffResult{}, fmt.Errorf("diff %s: close tar: %w", upper, err)
	}
	if bw != nil {
		if err := bw.Flush(); err != nil {
			return DiffResult{}, fmt.Errorf("diff %s: write tar: %w", upper, err)
		}
	}
	return DiffResult{
		ContentID: digest.NewDigest(digest.SHA256, id),
		Empty:     n == 0,
		Entries:   n,
	}, nil
}

// EntryWriter is a Diff destination that is told where each tar entry begins and ends (the layer
// blob writer cuts gzip members there). Diff writes to it unbuffered, calls BeginEntry before an
// entry's header with the entry's data length, and EndEntry once its data and padding are
// written; the end-of-archive blocks follow the last EndEntry.
type EntryWriter interface {
	io.Writer
	BeginEntry(name string, size int64) error
	EndEntry(name string, size int64) error
}

// pending is an upper path Diff has listed but not yet written, or an opaque marker waiting for
// its turn; only its sort key and name are held, never a header, so a layer of a million entries
// costs the names of the directories being walked, not a million headers.
type pending struct {
	key    string
	rel    string
	marker *diffEntry // an opaque marker built when its directory was written
}

// pendingHeap orders pending entries by key.
type pendingHeap []pending

func (h pendingHeap) Len() int           { return len(h) }
func (h pendingHeap) Less(i, j int) bool { return h[i].key < h[j].key }
func (h pendingHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *pendingHeap) Push(x any)        { *h = append(*h, x.(pending)) }
func (h *pendingHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = pending{}
	*h = old[:len(old)-1]
	return x
}

// walkSorted calls fn for every tar entry of upper in sort-key order, the order a sort of the
// whole list would give, without building that list: a heap holds the entries listed so far, and
// a directory's children are listed when the directory itself is written. Every key starts with
// its parent's key (whiteouts and markers included), so a parent always comes out before its
// children and nothing smaller than the entry being written can still be unlisted.
func walkSorted(upper string, fn func(*diffEntry) error) error {
	h := &pendingHeap{}
	list := func(rel string) error {
		dir := upper
		if rel != "" {
			dir = filepath.Join(upper, filepath.FromSlash(rel))
		}
		f, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("diff %s: %w", upper, err)
		}
		defer f.Close()
		for {
			ents, err := f.ReadDir(1024)
			for _, d := range ents {
				child := d.Name()
				if rel != "" {
					child = rel + "/" + child
				}
				key := child
				if d.Type()&fs.ModeCharDevice != 0 {
					// A 0/0 character device is a whiteout, written (and sorted) as .wh.NAME.
					var st unix.Stat_t
					if err := unix.Lstat(filepath.Join(dir, d.Name()), &st); err != nil {
						return fmt.Errorf("diff %s: %w", child, err)
					}
					if st.Rdev == 0 {
						key = path.Join(path.Dir(child), whiteoutPrefix+d.Name())
					}
				}
				heap.Push(h, pending{key: key, rel: child})
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("diff %s: list %s: %w", upper, rel, err)
			}
		}
	}
	if err := list(""); err != nil {
		return err
	}
	for h.Len() > 0 {
		p := heap.Pop(h).(pending)
		if p.marker != nil {
			if err := fn(p.marker); err != nil {
				return err
			}
			continue
		}
		es, err := diffEntries(filepath.Join(upper, filepath.FromSlash(p.rel)), p.rel)
		if err != nil {
			return fmt.Errorf("diff %s: %w", p.rel, err)
		}
		for i := range es {
			if es[i].key != p.key {
				// The opaque marker sorts among the directory's children.
				heap.Push(h, pending{key: es[i].key, marker: &es[i]})
				continue
			}
			if err := fn(&es[i]); err != nil {
				return err
			}
		}
		if len(es) > 0 && es[0].hdr.Typeflag == tar.TypeDir {
			if err := list(p.rel); err != nil {
				return err
			}
		}
	}
	return nil
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

// fdReader reads a file by its bare descriptor. os.Open costs two more syscalls a file (an
// fcntl and the poller's epoll_ctl, which a regular file refuses), a tenth of Diff's syscalls on
// a layer of small files.
type fdReader int

func (r fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func writeEntry(tw *tar.Writer, ew EntryWriter, id hash.Hash, upper string, e *diffEntry, links map[[2]uint64]string, copyBuf *[64 << 10]byte) error {
	hdr := e.hdr
	fd := -1
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
			// O_NOFOLLOW: the entry was a regular file when listed; never read through a symlink
			// something put there since.
			var err error
			for {
				fd, err = unix.Open(filepath.Join(upper, e.rel), unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
				if err != unix.EINTR {
					break
				}
			}
			if err != nil {
				return &fs.PathError{Op: "open", Path: e.rel, Err: err}
			}
			defer unix.Close(fd)
		}
	}

	if ew != nil {
		if err := ew.BeginEntry(hdr.Name, hdr.Size); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	var sum digest.Digest
	if fd >= 0 {
		h := sha256.New()
		n, err := io.CopyBuffer(io.MultiWriter(tw, h), fdReader(fd), copyBuf[:])
		if err != nil {
			return fmt.Errorf("copy content: %w", err)
		}
		if n != hdr.Size {
			return fmt.Errorf("file changed size while reading (%d, expected %d)", n, hdr.Size)
		}
		sum = digest.NewDigest(digest.SHA256, h)
	}
	hashEntry(id, hdr, sum)
	if ew != nil {
		if err := tw.Flush(); err != nil { // the padding belongs to this entry's member
			return err
		}
		return ew.EndEntry(hdr.Name, hdr.Size)
	}
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
