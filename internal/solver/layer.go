package solver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/layerblob"
	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/store"
)

const mediaTypeZstd = "application/vnd.oci.image.layer.v1.tar+zstd"

// commitLayer turns an upper dir into a compressed blob and a snapshot, in one pass over the files:
// the tar stream is hashed (diffID) and compressed (blob digest) as it is written. An upper dir
// with no entries gives an empty tar layer when keepEmpty is set, as BuildKit commits one for
// every RUN, COPY, ADD and WORKDIR (but WORKDIR /) whatever it changed; otherwise the record is
// marked Empty and the step has no layer.
//
// A gzip layer is written as gzip members (internal/layerblob): members whose uncompressed
// bytes equal a member of the blob this position committed last are copied from that blob
// instead of compressed, so re-running `COPY . .` after a one-file edit compresses about that
// file's member only. The result is the same bytes a cold commit writes.
func (s *solver) commitLayer(upper string, keepEmpty bool, position string) (*store.Record, error) {
	st := s.opts.Store
	bw, err := st.NewBlobWriter()
	if err != nil {
		return nil, err
	}
	defer bw.Abort()
	var (
		res       snapshot.DiffResult
		diffID    digest.Digest
		index     *layerblob.Index
		mediaType string
	)
	if s.opts.Compression == "zstd" {
		zw, err := zstd.NewWriter(bw)
		if err != nil {
			return nil, err
		}
		dh := sha256.New()
		res, err = snapshot.Diff(upper, io.MultiWriter(zw, dh))
		if err != nil {
			zw.Close()
			return nil, fmt.Errorf("diff: %w", err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("compress layer: %w", err)
		}
		diffID = digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(dh.Sum(nil)))
		mediaType = mediaTypeZstd
	} else {
		srcs, closeSrcs := s.memberSources(position)
		defer closeSrcs()
		lw := layerblob.NewWriter(bw, srcs...)
		res, err = snapshot.Diff(upper, lw)
		if err != nil {
			lw.Abort()
			return nil, fmt.Errorf("diff: %w", err)
		}
		if index, diffID, _, err = lw.Close(); err != nil {
			return nil, fmt.Errorf("compress layer: %w", err)
		}
		mediaType = ocispec.MediaTypeImageLayerGzip
	}
	rec := &store.Record{Created: time.Now().UTC().Truncate(time.Second)}
	if res.Empty && !keepEmpty {
		rec.Empty = true
		return rec, nil
	}
	blob, size, err := bw.Commit()
	if err != nil {
		return nil, err
	}
	if index != nil {
		// The index and the pointer are cache: failing to write them costs the next commit a
		// full compression, not this build.
		if st.PutMembers(blob, index.Encode()) == nil {
			st.SetLastBlob(position, blob)
		}
	}
	l := store.Layer{DiffID: diffID, Digest: blob, MediaType: mediaType, Size: size, ContentID: res.ContentID}
	if err := st.PutLayer(l); err != nil {
		return nil, err
	}
	if err := st.CommitSnapshot(upper, diffID); err != nil {
		return nil, err
	}
	rec.Layer = diffID
	rec.Size = size
	return rec, nil
}

// memberSources opens the blob the position committed last, with its member index, for the
// layer writer to copy members from. Anything missing or damaged gives no source.
func (s *solver) memberSources(position string) ([]layerblob.Source, func()) {
	st := s.opts.Store
	blob, err := st.LastBlob(position)
	if err != nil {
		return nil, func() {}
	}
	f, err := os.Open(st.BlobPath(blob))
	if err != nil {
		return nil, func() {}
	}
	fi, err := f.Stat()
	var idx *layerblob.Index
	if err == nil {
		var data []byte
		if data, err = st.Members(blob); err == nil {
			idx, err = layerblob.Decode(data, fi.Size())
		}
	}
	if err != nil {
		f.Close()
		return nil, func() {}
	}
	return []layerblob.Source{{Blob: f, Index: idx}}, func() { f.Close() }
}

// The blob writer lets the layer writer skip hashing a prefix copied from an earlier blob.
var _ layerblob.StateWriter = (*store.BlobWriter)(nil)

// decompress opens a layer blob by its media type (or by sniffing, for docker media types).
func decompress(r io.Reader, mediaType string) (io.ReadCloser, error) {
	br := &peekReader{r: r}
	head, _ := br.peek(4)
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		// pgzip inflates ahead in its own goroutine (with klauspost's faster flate), so a cold
		// pull's decompression overlaps the unpack's file creation instead of alternating with it:
		// on the Debian + node base (128 MB gzip) inflating alone took 5.8 s with compress/gzip,
		// 1.8 s with pgzip.
		return pgzip.NewReader(br)
	case len(head) >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd:
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

type peekReader struct {
	r   io.Reader
	buf []byte
}

func (p *peekReader) peek(n int) ([]byte, error) {
	for len(p.buf) < n {
		b := make([]byte, n-len(p.buf))
		m, err := p.r.Read(b)
		p.buf = append(p.buf, b[:m]...)
		if err != nil {
			return p.buf, err
		}
	}
	return p.buf, nil
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	return p.r.Read(b)
}
