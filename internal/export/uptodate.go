package export

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/image"
)

// ArchiveTail returns the bytes every archive WriteOCIArchive (docker false) or WriteDockerArchive
// writes for img and tags ends with: its last file (index.json, or the docker archive's manifest.json
// or repositories), padded to a tar block, and the tar trailer. Those files name the manifest or the
// config and layers, so an archive of another image or other tags ends differently.
func ArchiveTail(img *image.Image, tags []string, docker bool) ([]byte, error) {
	names, err := parseTags(tags)
	if err != nil {
		return nil, err
	}
	var last []byte
	if docker {
		_, manifestJSON, repositoriesJSON, err := dockerArchiveFiles(img, names)
		if err != nil {
			return nil, err
		}
		last = manifestJSON
		if repositoriesJSON != nil {
			last = repositoriesJSON
		}
	} else if last, err = layoutIndex(img, names); err != nil {
		return nil, err
	}
	const block = 512
	pad := (block - len(last)%block) % block
	return append(last, make([]byte, pad+2*block)...), nil
}

// WriteFileIfChanged is WriteFile, except that when dest already holds exactly the bytes write
// produces, it is left alone and written reports false: an unchanged image is not exported again.
// dest is kept only if it is a regular file (not followed through a symlink) with mode perm that
// ends with tail (a cheap first check, see ArchiveTail) and the whole of write's output compares
// equal to it, byte for byte; the compare stops at the first difference, and costs reading dest
// instead of writing and fsyncing a new copy. So an archive a user edited, truncated, replaced or
// chmodded is always rewritten.
//
// With a memo, a compare that found dest equal records dest's stat signature (device, inode, size,
// mtime, ctime, mode) with tail's digest; a later export of the same tail skips even the compare
// when dest's signature is unchanged. Every write, truncate, chmod or rename of dest changes its
// ctime, so an unchanged signature means unchanged bytes — except for a change made in the same
// clock tick as the stat the memo holds. The memo is therefore trusted only when dest's ctime is
// at least memoMargin older than the memo itself (git's racy-index rule); a younger one costs a
// compare, which records a trusted memo.
func WriteFileIfChanged(dest string, perm fs.FileMode, tail []byte, write func(io.Writer) error, memo Memo) (written bool, err error) {
	abs, err := filepath.Abs(dest)
	if err != nil {
		return true, WriteFile(dest, perm, write)
	}
	if memo != nil && memoTrusted(memo.OutputMemo(abs), abs, perm, tail) {
		return false, nil
	}
	if sameContent(dest, perm, tail, write) {
		if memo != nil {
			if sig, _, ok := signature(abs, perm, tail); ok {
				memo.SetOutputMemo(abs, fmt.Sprintf("%s %d", sig, time.Now().UnixNano())) // cache: an error costs a compare
			}
		}
		return false, nil
	}
	return true, WriteFile(dest, perm, write)
}

// Memo keeps, per absolute output path, what WriteFileIfChanged recorded there (the store's
// outputs/).
type Memo interface {
	OutputMemo(dest string) string
	SetOutputMemo(dest, memo string) error
}

// memoMargin is how much older than its memo dest's ctime must be for the memo to be trusted:
// far above any filesystem's timestamp granularity.
const memoMargin = 2 * time.Second

// memoFormat names the archive writer's format; bump it when WriteOCIArchive or
// WriteDockerArchive would write other bytes for the same image, so no memo vouches for an
// archive an older strata wrote.
const memoFormat = "v1"

// signature is dest's stat signature plus tail's digest, as a memo records it, and dest's ctime.
func signature(dest string, perm fs.FileMode, tail []byte) (string, int64, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(dest, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || fs.FileMode(st.Mode&0o7777) != perm {
		return "", 0, false
	}
	return fmt.Sprintf("%s %x %d %d %d %d %d %o", memoFormat, sha256.Sum256(tail), st.Dev, st.Ino, st.Size,
		st.Mtim.Nano(), st.Ctim.Nano(), st.Mode), st.Ctim.Nano(), true
}

func memoTrusted(memo, dest string, perm fs.FileMode, tail []byte) bool {
	i := strings.LastIndexByte(memo, ' ')
	if i < 0 {
		return false
	}
	recorded, err := strconv.ParseInt(memo[i+1:], 10, 64)
	if err != nil {
		return false
	}
	sig, ctime, ok := signature(dest, perm, tail)
	return ok && sig == memo[:i] && ctime+int64(memoMargin) <= recorded
}

var errDiffers = errors.New("output differs from the existing file")

func sameContent(dest string, perm fs.FileMode, tail []byte, write func(io.Writer) error) bool {
	f, err := os.OpenFile(dest, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != perm || fi.Size() < int64(len(tail)) {
		return false
	}
	if len(tail) > 0 {
		got := make([]byte, len(tail))
		if _, err := f.ReadAt(got, fi.Size()-int64(len(tail))); err != nil || !bytes.Equal(got, tail) {
			return false
		}
	}
	c := &compareWriter{r: bufio.NewReaderSize(f, 1<<20)}
	if err := write(c); err != nil {
		// errDiffers, or a real failure that the write after this reports.
		return false
	}
	_, err = c.r.ReadByte()
	return err == io.EOF // and not longer than the output
}

// compareWriter fails the first Write whose bytes differ from what r holds next.
type compareWriter struct {
	r   *bufio.Reader
	buf []byte
}

func (c *compareWriter) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		n := min(len(p), 256<<10)
		if cap(c.buf) < n {
			c.buf = make([]byte, n)
		}
		b := c.buf[:n]
		if _, err := io.ReadFull(c.r, b); err != nil || !bytes.Equal(b, p[:n]) {
			return done, errDiffers
		}
		done += n
		p = p[n:]
	}
	return done, nil
}
