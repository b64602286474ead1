package copier

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/strata-build/strata/internal/userns"
)

// decompress sniffs the compression by magic bytes, as Docker's archive.DecompressStream does;
// an uncompressed stream is returned as is.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		return zr, nil
	case bytes.HasPrefix(magic, []byte("BZh")):
		return io.NopCloser(bzip2.NewReader(br)), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		// Docker shells out to xz too; no pure-Go xz decoder is in the dependency set.
		cmd := exec.Command("xz", "-d", "-c", "-q")
		cmd.Stdin = br
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start xz: %w", err)
		}
		return &cmdReader{ReadCloser: out, cmd: cmd}, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	default:
		return io.NopCloser(br), nil
	}
}

type cmdReader struct {
	io.ReadCloser
	cmd *exec.Cmd
}

func (c *cmdReader) Close() error {
	c.ReadCloser.Close()
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
	return nil
}

// unpack extracts src into destPath if it is a tar archive (possibly compressed); it reports
// false for any other file so the caller copies it instead, which is how ADD tells them apart.
func (c *copier) unpack(srcRel, destPath string) (bool, error) {
	src := filepath.Join(c.srcRoot, filepath.FromSlash(srcRel))
	f, err := os.Open(src)
	if err != nil {
		return false, fmt.Errorf("open %q: %w", srcRel, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false, nil
	}
	rc, err := decompress(f)
	if err != nil {
		return false, nil
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	hdr, err := tr.Next()
	if err != nil {
		return false, nil
	}
	base, err := c.dir(".", destPath)
	if err != nil {
		return true, err
	}
	for ; err == nil; hdr, err = tr.Next() {
		if err := c.extract(base, hdr, tr); err != nil {
			return true, fmt.Errorf("extract %q from %q: %w", hdr.Name, srcRel, err)
		}
	}
	if !errors.Is(err, io.EOF) {
		return true, fmt.Errorf("read archive %q: %w", srcRel, err)
	}
	return true, nil
}

// archivePath cleans a member name. A member that climbs out with ".." stops at the extraction
// directory, as in BuildKit (case add-tar-dotdot-entries: "../../escaped" lands in dest/escaped),
// so nothing is written outside it and the archive still extracts.
func archivePath(name string) (string, error) {
	p := strings.TrimPrefix(path.Clean("/"+name), "/")
	if p == "" {
		p = "."
	}
	return p, nil
}

// extract writes one archive member under base. Parents are resolved as chrootarchive does: a
// symlink extracted earlier is followed with base as the root, so nothing lands outside base.
func (c *copier) extract(base string, hdr *tar.Header, r io.Reader) error {
	name, err := archivePath(hdr.Name)
	if err != nil {
		return err
	}
	if name == "." {
		return nil
	}
	parent, err := c.dir(base, path.Dir(name))
	if err != nil {
		return err
	}
	full := path.Join(parent, path.Base(name))
	existing, err := c.root.Lstat(full)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Replace whatever is there, except that a directory over a directory merges (Docker's rule).
	if existing != nil && !(existing.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := c.root.RemoveAll(full); err != nil {
			return fmt.Errorf("replace %q: %w", full, err)
		}
		if existing.IsDir() {
			c.closeSubs() // a root kept on a directory that is gone must not be written through
		}
	}
	mode := hdr.FileInfo().Mode()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if existing == nil || !existing.IsDir() {
			if err := c.root.Mkdir(full, 0o700); err != nil {
				return err
			}
		}
		c.dirs[dirKey(base, name)] = full
	case tar.TypeReg, 0: // 0 is the pre-POSIX regular-file flag (TypeRegA)
		out, err := c.root.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, r)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		// The target is kept as written, pointing outside or not: later writes through it are
		// resolved with base as the root (dir), so it cannot lead anything out.
		if err := c.root.Symlink(hdr.Linkname, full); err != nil {
			return err
		}
	case tar.TypeLink:
		tn, err := archivePath(hdr.Linkname)
		if err != nil {
			return err
		}
		tparent, err := c.dir(base, path.Dir(tn))
		if err != nil {
			return err
		}
		if err := c.root.Link(path.Join(tparent, path.Base(tn)), full); err != nil {
			return err
		}
		return nil // a hard link shares the target's metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		dev := uint64(hdr.Devmajor)<<8 | uint64(hdr.Devminor)&0xff | (uint64(hdr.Devminor)&^0xff)<<12
		if err := c.mknod(parent, path.Base(name), mode, dev); err != nil {
			return err
		}
	default:
		return nil // pax globals and unknown types carry nothing to write
	}
	uid, gid := hdr.Uid, hdr.Gid
	if c.opts.Chown != nil {
		uid, gid = c.opts.Chown.UID, c.opts.Chown.GID
	}
	if hdr.Typeflag == tar.TypeSymlink {
		if err := c.root.Lchown(full, uid, gid); err != nil {
			return userns.ChownError(err, uid, gid)
		}
		return c.lutimes(parent, path.Base(name), hdr.ModTime)
	}
	if err := c.meta(full, mode, uid, gid); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		// Entries written later would bump it; finish applies the archive's time last.
		c.times[full] = hdr.ModTime
		return nil
	}
	mt := hdr.ModTime
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	return c.root.Chtimes(full, mt, mt)
}
