package export

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"

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
// That needs no record of an earlier export, so an archive a user edited, truncated, replaced or
// chmodded is always rewritten: dest is kept only if it is a regular file (not followed through a
// symlink) with mode perm, it ends with tail (a cheap first check, see ArchiveTail), and the whole
// of write's output compares equal to it, byte for byte. The compare stops at the first
// difference, and costs reading dest instead of writing and fsyncing a new copy.
func WriteFileIfChanged(dest string, perm fs.FileMode, tail []byte, write func(io.Writer) error) (written bool, err error) {
	if sameContent(dest, perm, tail, write) {
		return false, nil
	}
	return true, WriteFile(dest, perm, write)
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
