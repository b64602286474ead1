package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// explainImageDiff says why the images tagged tag in two OCI layouts have different digests, for
// a test that expects them equal: a unified diff of index.json, the manifests and the configs,
// and for each layer whose blob differs, its uncompressed digest, its gzip members (offset,
// compressed and uncompressed length, header), `tar -tvv --full-time` of both, every tar header
// field and content digest of both, the first differing byte of the tars, and the contents of
// small files that differ. A flaky digest comparison then explains its failure in the CI log.
func explainImageDiff(t *testing.T, a, b, tag string) string {
	t.Helper()
	var out strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&out, format, args...) }
	w("--- %s\n+++ %s\n", a, b)
	w("index.json:\n%s", unifiedDiff(t, prettyJSON(readFileOrEmpty(filepath.Join(a, "index.json"))), prettyJSON(readFileOrEmpty(filepath.Join(b, "index.json")))))
	ma, mb := layoutManifest(a, tag), layoutManifest(b, tag)
	w("manifest (%s vs %s):\n%s", ma.digest, mb.digest, unifiedDiff(t, prettyJSON(ma.raw), prettyJSON(mb.raw)))
	w("config (%s vs %s):\n%s", ma.Config.Digest, mb.Config.Digest,
		unifiedDiff(t, prettyJSON(readFileOrEmpty(blobPath(a, ma.Config.Digest))), prettyJSON(readFileOrEmpty(blobPath(b, mb.Config.Digest)))))
	for i := range max(len(ma.Layers), len(mb.Layers)) {
		if i >= len(ma.Layers) || i >= len(mb.Layers) {
			w("layer %d: only in one image\n", i+1)
			continue
		}
		la, lb := ma.Layers[i], mb.Layers[i]
		if la.Digest == lb.Digest {
			w("layer %d: same blob %s\n", i+1, la.Digest)
			continue
		}
		w("layer %d: %s (%d bytes, %s) vs %s (%d bytes, %s)\n", i+1, la.Digest, la.Size, la.MediaType, lb.Digest, lb.Size, lb.MediaType)
		xa, xb := readLayerBlob(blobPath(a, la.Digest)), readLayerBlob(blobPath(b, lb.Digest))
		for _, x := range []struct {
			side string
			l    layerBlob
		}{{"-", xa}, {"+", xb}} {
			if x.l.err != nil {
				w("  %s read: %v\n", x.side, x.l.err)
			}
			w("  %s uncompressed sha256:%x (%d bytes), %d gzip members:\n", x.side, sha256.Sum256(x.l.tar), len(x.l.tar), len(x.l.members))
			for k, m := range x.l.members {
				if k == 40 {
					w("    … %d more\n", len(x.l.members)-k)
					break
				}
				w("    member %d: offset %d, %d bytes compressed, %d uncompressed (tar offset %d), header % x\n", k, m.offset, m.size, m.usize, m.uoffset, m.header)
			}
		}
		if bytes.Equal(xa.tar, xb.tar) {
			w("  same tar bytes: only the compression differs\n")
			continue
		}
		n := 0
		for n < len(xa.tar) && n < len(xb.tar) && xa.tar[n] == xb.tar[n] {
			n++
		}
		w("  tars first differ at byte %d (entry %q vs %q)\n", n, entryAt(xa.tar, n), entryAt(xb.tar, n))
		w("  tar -tvv --full-time:\n%s", unifiedDiff(t, tarListing(xa.tar), tarListing(xb.tar)))
		ea, eb := tarEntries(xa.tar), tarEntries(xb.tar)
		w("  headers and contents:\n%s", unifiedDiff(t, ea.dump, eb.dump))
		for name, ca := range ea.small {
			if cb, ok := eb.small[name]; ok && ca != cb {
				w("  content of %s:\n  - %q\n  + %q\n", name, ca, cb)
			}
		}
	}
	return out.String()
}

type layoutImage struct {
	digest string
	raw    string
	Config struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
	} `json:"layers"`
}

// layoutManifest reads the manifest index.json names by tag (or its only manifest).
func layoutManifest(layout, tag string) layoutImage {
	var idx struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	var img layoutImage
	if err := json.Unmarshal([]byte(readFileOrEmpty(filepath.Join(layout, "index.json"))), &idx); err != nil {
		return img
	}
	for _, m := range idx.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == tag || len(idx.Manifests) == 1 {
			img.digest = m.Digest
		}
	}
	img.raw = readFileOrEmpty(blobPath(layout, img.digest))
	json.Unmarshal([]byte(img.raw), &img)
	return img
}

func prettyJSON(s string) string {
	var buf bytes.Buffer
	if json.Indent(&buf, []byte(s), "", "  ") != nil {
		return s
	}
	return buf.String() + "\n"
}

// unifiedDiff is `diff -u` of two texts, or "(same)".
func unifiedDiff(t *testing.T, a, b string) string {
	if a == b {
		return "  (same)\n"
	}
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(pa, []byte(a), 0o644)
	os.WriteFile(pb, []byte(b), 0o644)
	out, _ := exec.Command("diff", "-u", pa, pb).CombinedOutput()
	// Drop the file header lines: the caller says what is compared.
	lines := strings.SplitAfter(string(out), "\n")
	if len(lines) > 2 {
		lines = lines[2:]
	}
	return strings.Join(lines, "")
}

type gzipMember struct {
	offset, size, usize, uoffset int64
	header                       []byte
}

type layerBlob struct {
	tar     []byte
	members []gzipMember
	err     error
}

// countingReader counts the bytes gzip consumes; it is a flate.Reader, so gzip reads through it
// without buffering ahead and the count at a member's end is that member's end in the blob.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// readLayerBlob decompresses a layer blob member by member (a plain tar is returned as it is).
func readLayerBlob(p string) layerBlob {
	data, err := os.ReadFile(p)
	if err != nil {
		return layerBlob{err: err}
	}
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		return layerBlob{tar: data}
	}
	var l layerBlob
	cr := &countingReader{r: bufio.NewReader(bytes.NewReader(data))}
	zr, err := gzip.NewReader(cr)
	for start := int64(0); err == nil; start = cr.n {
		zr.Multistream(false)
		var buf bytes.Buffer
		_, err = io.Copy(&buf, zr)
		l.members = append(l.members, gzipMember{offset: start, size: cr.n - start, usize: int64(buf.Len()), uoffset: int64(len(l.tar)), header: data[start:min(start+10, int64(len(data)))]})
		l.tar = append(l.tar, buf.Bytes()...)
		if err == nil {
			err = zr.Reset(cr)
		}
	}
	if !errors.Is(err, io.EOF) {
		l.err = err
	}
	return l
}

// tarListing is GNU tar's verbose listing of a tar, in UTC.
func tarListing(data []byte) string {
	cmd := exec.Command("tar", "-tvv", "--full-time", "-f", "-")
	cmd.Stdin = bytes.NewReader(data)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out) + "tar: " + err.Error() + "\n"
	}
	return string(out)
}

type tarDump struct {
	dump  string            // one line per entry: every header field and the content's digest
	small map[string]string // contents of entries up to 4 KiB
}

func tarEntries(data []byte) tarDump {
	d := tarDump{small: map[string]string{}}
	var b strings.Builder
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(&b, "error: %v\n", err)
			}
			break
		}
		content, _ := io.ReadAll(tr)
		var pax []string
		for k, v := range h.PAXRecords {
			pax = append(pax, k+"="+strconv.Quote(v))
		}
		sort.Strings(pax)
		fmt.Fprintf(&b, "%s type=%c mode=%o uid=%d gid=%d uname=%q gname=%q size=%d mtime=%s atime=%s ctime=%s link=%q dev=%d,%d format=%v pax=[%s] sha256:%x\n",
			h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Uname, h.Gname, h.Size, h.ModTime.UTC().Format("2006-01-02T15:04:05.999999999"),
			h.AccessTime.UTC().Format("2006-01-02T15:04:05.999999999"), h.ChangeTime.UTC().Format("2006-01-02T15:04:05.999999999"),
			h.Linkname, h.Devmajor, h.Devminor, h.Format, strings.Join(pax, " "), sha256.Sum256(content))
		if len(content) <= 4096 {
			d.small[h.Name] = string(content)
		}
	}
	d.dump = b.String()
	return d
}

// entryAt names the tar entry whose header or data holds byte off.
func entryAt(data []byte, off int) string {
	cr := &offsetReader{r: bytes.NewReader(data)}
	tr := tar.NewReader(cr)
	name := "(before the first entry)"
	for {
		h, err := tr.Next()
		if err != nil {
			return name + " (or the end of the tar)"
		}
		io.Copy(io.Discard, tr)
		if cr.n > int64(off) {
			return h.Name
		}
		name = h.Name
	}
}

type offsetReader struct {
	r *bytes.Reader
	n int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	o.n += int64(n)
	return n, err
}
