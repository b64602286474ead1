package remotecache

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/strata-build/strata/internal/copier"
)

// A cache mount travels as tar blobs: a full copy, then deltas holding what changed, with
// ".wh.NAME" entries for deletions (as in image layers). These helpers write and apply them. They
// never write outside the mount directory: every path goes through an os.Root, and entries that
// could escape or that a cache has no use for (devices, fifos) are refused or skipped.

const whiteoutPrefix = ".wh."

// fileState is what decides whether a path changed between two versions of a mount.
type fileState struct {
	typ   byte // tar type flag
	mode  fs.FileMode
	uid   int
	gid   int
	size  int64
	mtime time.Time
	link  string
}

// scanDir lists every path under dir (relative, slash-separated; "." is the dir itself).
func scanDir(dir string) (map[string]fileState, int64, error) {
	out := map[string]fileState{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(d.Name(), whiteoutPrefix) {
			// A file named like a whiteout would read back as a deletion; caches do not make
			// such names, so it stays out of the export rather than corrupting it.
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := info.Sys().(*syscall.Stat_t)
		fsx := fileState{mode: info.Mode().Perm() | info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), mtime: info.ModTime()}
		if st != nil {
			fsx.uid, fsx.gid = int(st.Uid), int(st.Gid)
		}
		switch {
		case info.Mode().IsRegular():
			fsx.typ, fsx.size = tar.TypeReg, info.Size()
			total += info.Size()
		case info.IsDir():
			fsx.typ = tar.TypeDir
		case info.Mode()&fs.ModeSymlink != 0:
			fsx.typ = tar.TypeSymlink
			if fsx.link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil // sockets, fifos, devices: not cache content
		}
		out[rel] = fsx
		return nil
	})
	return out, total, err
}

// sameState compares two states; a directory's mtime alone does not make it changed (its entries
// say what changed).
func sameState(a, b fileState) bool {
	if a.typ != b.typ || a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.link != b.link {
		return false
	}
	if a.typ == tar.TypeDir {
		return true
	}
	return a.size == b.size && a.mtime.Equal(b.mtime)
}

// writeTar writes the paths of cur that differ from base (all of them when base is nil) plus
// whiteouts for paths of base that are gone, sorted, so equal trees give equal bytes.
func writeTar(w io.Writer, dir string, cur, base map[string]fileState) (changed int, err error) {
	tw := tar.NewWriter(w)
	var names []string
	for p := range cur {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		st := cur[p]
		if base != nil {
			if b, ok := base[p]; ok && sameState(b, st) {
				continue
			}
		}
		changed++
		name := p
		if st.typ == tar.TypeDir {
			name += "/"
		}
		hdr := &tar.Header{Typeflag: st.typ, Name: name, Mode: int64(copier.UnixMode(st.mode)), Uid: st.uid, Gid: st.gid,
			ModTime: st.mtime, Linkname: st.link, Format: tar.FormatPAX}
		if st.typ == tar.TypeReg {
			hdr.Size = st.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return 0, err
		}
		if st.typ == tar.TypeReg {
			f, err := os.Open(filepath.Join(dir, filepath.FromSlash(p)))
			if err != nil {
				return 0, err
			}
			_, err = io.CopyN(tw, f, st.size)
			f.Close()
			if err != nil {
				return 0, fmt.Errorf("%s changed while being exported: %w", p, err)
			}
		}
	}
	if base != nil {
		var gone []string
		for p := range base {
			if _, ok := cur[p]; !ok && p != "." {
				// Only the topmost removed path needs a whiteout: one whose parent is gone, or is
				// no longer a directory, is covered by the parent's own entry (applyTar replaces
				// a path whose type changed whole). A whiteout under a parent that became a
				// symlink would otherwise delete through the link.
				if parent := path.Dir(p); parent != "." {
					if pst, still := cur[parent]; !still || pst.typ != tar.TypeDir {
						continue
					}
				}
				gone = append(gone, p)
			}
		}
		sort.Strings(gone)
		for _, p := range gone {
			changed++
			wh := path.Join(path.Dir(p), whiteoutPrefix+path.Base(p))
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: wh, Mode: 0o600, Format: tar.FormatPAX}); err != nil {
				return 0, err
			}
		}
	}
	return changed, tw.Close()
}

// applyTar applies one blob of a mount chain to dir.
func applyTar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirTimes []dirTime
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("entry %q leaves the mount", hdr.Name)
		}
		base := path.Base(name)
		if strings.HasPrefix(base, whiteoutPrefix) {
			victim := path.Join(path.Dir(name), strings.TrimPrefix(base, whiteoutPrefix))
			if parent := path.Dir(victim); parent != "." {
				// Never delete through a symlink, even inside the mount.
				if fi, err := root.Lstat(parent); err != nil || !fi.IsDir() {
					continue
				}
			}
			if victim != "." {
				if err := root.RemoveAll(victim); err != nil {
					return err
				}
			}
			continue
		}
		mode := fs.FileMode(hdr.Mode & 0o777)
		if name != "." {
			if fi, err := root.Lstat(name); err == nil && (fi.IsDir() != (hdr.Typeflag == tar.TypeDir) ||
				fi.Mode()&fs.ModeSymlink != 0 || hdr.Typeflag == tar.TypeSymlink) {
				if err := root.RemoveAll(name); err != nil {
					return err
				}
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if name != "." {
				if err := root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
					return err
				}
			}
			dirTimes = append(dirTimes, dirTime{name, hdr.ModTime})
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
			root.Lchown(name, hdr.Uid, hdr.Gid)
			continue
		default:
			continue
		}
		if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		if err := root.Chmod(name, mode|fileModeBits(hdr.Mode)); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			root.Chtimes(name, hdr.ModTime, hdr.ModTime)
		}
	}
	// Directory times last: creating their entries moved them.
	for i := len(dirTimes) - 1; i >= 0; i-- {
		root.Chtimes(dirTimes[i].name, dirTimes[i].t, dirTimes[i].t)
	}
	return nil
}

func fileModeBits(m int64) fs.FileMode {
	var fm fs.FileMode
	if m&syscall.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}
