// Package layerblob writes a layer tar as a gzip blob made of independent members, so a layer
// that differs from an earlier one in a few files reuses the earlier blob's compressed bytes for
// everything else.
//
// A member is a complete gzip stream (fixed header: no name, no mtime, OS byte 255; a fixed
// compression level), and a blob is their concatenation: valid gzip that every multistream
// reader (Go, zlib, skopeo, umoci, registries) decompresses as one tar. Where members start
// depends on the tar's bytes and entry list only (see cut rules on Writer), and a member's
// compressed bytes are a pure function of its uncompressed bytes, so the same tar gives the same
// blob whether every member was compressed afresh or copied from an earlier blob.
package layerblob

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/fnv"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// Compressor names how members are compressed: library, level and header. An index made by
// another compressor is never used to copy members, so a blob written incrementally is always
// byte-identical to one compressed cold by the same strata. Change it whenever the compression
// library is upgraded or the level or header changes.
const Compressor = "klauspost-compress-1.20.3/gzip-6/os255"

const level = 6

// Cut rules. They read only the tar stream and its entries, never timing or chunking of writes.
const (
	// BigEntry: an entry whose data is at least this long gets members of its own (a cut before
	// its header and after its padding).
	BigEntry = 256 << 10
	// MaxMember: a member is cut when it reaches this many uncompressed bytes, even inside an
	// entry (only big entries get there: groups are cut at GroupCap first).
	MaxMember = 4 << 20
	// GroupCap: a group of small entries is cut after the entry that takes it to this size.
	GroupCap = 512 << 10
	// groupMask: a group is also cut after an entry whose path hash has these bits zero (1 in
	// 16), so an inserted or removed file moves cuts only until the next such path.
	groupMask = 15
)

// Member is one gzip member of a blob.
type Member struct {
	Key    [32]byte // sha256 of the uncompressed bytes
	Offset int64    // where its compressed bytes start in the blob
	Size   int64    // compressed length, gzip header and trailer included
	USize  int64    // uncompressed length
	CRC    uint32   // crc32 (IEEE) of the uncompressed bytes, as in its gzip trailer
	// Sum is the sha256 of the compressed bytes: a member is copied only if the bytes read back
	// hash to it, so a damaged blob is never copied from (re-hashing is cheaper than inflating).
	Sum [32]byte
	// End is the diffID's sha256 state (encoding.BinaryMarshaler form) after this member's
	// bytes, nil when unknown. A later blob whose first members have the same keys, in order, has
	// the same tar prefix, so its diffID continues from this state instead of hashing that prefix.
	End []byte
	// BlobEnd is, likewise, the state of the blob digest after this member's compressed bytes,
	// nil when out was no StateWriter.
	BlobEnd []byte
}

// StateWriter is an out that hashes what it is written (the store's blob writer, for the blob
// digest) and can take bytes whose hash state afterwards is already known.
type StateWriter interface {
	io.Writer
	// HashState is the hash's state (encoding.BinaryMarshaler form) after everything written.
	HashState() ([]byte, error)
	// WriteKnown writes p without hashing it: state is the hash's state once p is written.
	WriteKnown(p, state []byte) error
}

// Source is an earlier blob whose members may be copied: its bytes and its index.
type Source struct {
	Blob  io.ReaderAt
	Index *Index
}

// Stats says how a blob was made.
type Stats struct {
	Members, Reused, Compressed int
	ReusedBytes                 int64 // uncompressed bytes whose compression was copied
	Fallbacks                   int   // members an index offered but whose bytes did not check out
	// UnhashedBytes is the tar prefix whose diffID hashing was skipped (see Writer), and
	// UnhashedBlobBytes the blob prefix written with WriteKnown (see StateWriter).
	UnhashedBytes, UnhashedBlobBytes int64
}

// Writer takes a layer tar (Write) with its entry boundaries (BeginEntry, EndEntry) and writes
// the blob to out. Members are compressed on GOMAXPROCS goroutines and written in order.
//
// The diffID is hashed by the goroutine that writes members in order, not by the one producing
// the tar. While the members written so far have the keys of the first source's first members,
// in the same order, the tar so far is that blob's tar prefix byte for byte (keys are sha256),
// so no byte is hashed: the diffID resumes from the state the source recorded after the last
// such member (Member.End). A one-file edit near the end of a layer hashes only what follows it.
type Writer struct {
	out    io.Writer
	prev   map[[32]byte]prevMember
	diffID hash.Hash

	// order is the first source's members with End states, which the tar follows while inSync.
	order  []Member
	inSync bool
	resume []byte // End of the last member taken in sync: the diffID's state so far
	// sw is out when it is a StateWriter; blobInSync: the compressed members so far are order's
	// first ones (same Sums), so out's hash state is order's BlobEnd (see writeMember).
	sw         StateWriter
	blobInSync bool

	cur      []byte // the member being filled
	curBig   bool   // cur holds (part of) a big entry
	inflight chan *job
	done     chan struct{}
	workers  sync.WaitGroup
	jobs     chan *job

	mu      sync.Mutex
	err     error // first error of the writing goroutine
	members []Member
	offset  int64
	stats   Stats
	closed  bool
}

type prevMember struct {
	src Source
	m   Member
}

type job struct {
	data  []byte
	out   []byte // compressed bytes
	m     Member
	reuse bool
	fail  bool
	ready chan struct{}
}

// bufPool holds member buffers, sized for the largest member so appends never reallocate; at
// most 3×GOMAXPROCS+1 are in use (filling, queued, compressing).
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, MaxMember); return &b }}

// NewWriter writes a blob to out, copying members from srcs where their keys match.
func NewWriter(out io.Writer, srcs ...Source) *Writer {
	n := runtime.GOMAXPROCS(0)
	w := &Writer{
		out:      out,
		prev:     map[[32]byte]prevMember{},
		diffID:   sha256.New(),
		inflight: make(chan *job, 2*n),
		jobs:     make(chan *job, 2*n),
		done:     make(chan struct{}),
	}
	w.sw, _ = out.(StateWriter)
	for _, s := range srcs {
		if s.Index == nil || s.Blob == nil || s.Index.Compressor != Compressor {
			continue
		}
		if w.order == nil && statesUsable(s.Index.Members, func(m Member) []byte { return m.End }) {
			w.order, w.inSync = s.Index.Members, true
			w.blobInSync = w.sw != nil && statesUsable(s.Index.Members, func(m Member) []byte { return m.BlobEnd })
		}
		for _, m := range s.Index.Members {
			if _, ok := w.prev[m.Key]; !ok {
				w.prev[m.Key] = prevMember{src: s, m: m}
			}
		}
	}
	for range n {
		w.workers.Add(1)
		go w.work()
	}
	go w.drain()
	return w
}

// statesUsable reports whether every member has an End state this build's sha256 can resume
// from (another Go version may marshal differently): checked up front, because once a prefix
// has been skipped there is no falling back to hashing it.
func statesUsable(ms []Member, state func(Member) []byte) bool {
	if len(ms) == 0 {
		return false
	}
	h := sha256.New().(encoding.BinaryUnmarshaler)
	for _, m := range ms {
		if st := state(m); st == nil || h.UnmarshalBinary(st) != nil {
			return false
		}
	}
	return true
}

// Write adds tar bytes to the current member, cutting it every MaxMember bytes.
func (w *Writer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := MaxMember - len(w.cur)
		k := min(room, len(p))
		if w.cur == nil {
			w.cur = (*bufPool.Get().(*[]byte))[:0]
		}
		w.cur = append(w.cur, p[:k]...)
		p = p[k:]
		if len(w.cur) >= MaxMember {
			if err := w.cut(); err != nil {
				return 0, err
			}
		}
	}
	return n, w.failed()
}

// BeginEntry is called before an entry's header is written; size is its data length.
func (w *Writer) BeginEntry(name string, size int64) error {
	if size >= BigEntry {
		if err := w.cut(); err != nil {
			return err
		}
		w.curBig = true
	}
	return nil
}

// EndEntry is called once the entry's data and padding are written.
func (w *Writer) EndEntry(name string, size int64) error {
	if w.curBig || len(w.cur) >= GroupCap || pathHash(name)&groupMask == 0 {
		return w.cut()
	}
	return nil
}

func pathHash(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// cut ends the current member (if it has bytes) and hands it to the workers.
func (w *Writer) cut() error {
	w.curBig = false
	if len(w.cur) == 0 {
		return w.failed()
	}
	j := &job{data: w.cur, ready: make(chan struct{})}
	w.cur = nil
	w.inflight <- j // bounded: waits when the writer is 2×GOMAXPROCS members behind
	w.jobs <- j
	return w.failed()
}

func (w *Writer) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *Writer) work() {
	defer w.workers.Done()
	for j := range w.jobs {
		j.m.Key = sha256.Sum256(j.data)
		j.m.CRC = crc32.ChecksumIEEE(j.data)
		j.m.USize = int64(len(j.data))
		if p, ok := w.prev[j.m.Key]; ok {
			if out, ok := copyMember(p, j.m); ok {
				j.out, j.reuse = out, true
			} else {
				j.fail = true
			}
		}
		if !j.reuse {
			j.out = compress(j.data)
			j.m.Sum = sha256.Sum256(j.out)
		} else {
			j.m.Sum = w.prev[j.m.Key].m.Sum
		}
		close(j.ready)
	}
}

// copyMember reads an earlier member's compressed bytes and checks them against what this member
// must hold: the index entry's own fields, the sha256 of the compressed bytes the index recorded
// when they were written, the fixed gzip header, and the trailer's crc32 and length. Any mismatch
// (a damaged index, a damaged blob) means: compress instead. The index is checksummed and names
// its blob by digest, and its writer recorded Key (uncompressed) and Sum (compressed) of each
// member it compressed, so bytes that hash to Sum are the compression of bytes that hash to Key.
func copyMember(p prevMember, want Member) ([]byte, bool) {
	m := p.m
	if m.USize != want.USize || m.CRC != want.CRC || m.Size < int64(len(header))+8 || m.Size > 2*MaxMember {
		return nil, false
	}
	b := getOut(int(m.Size))[:m.Size]
	if _, err := p.src.Blob.ReadAt(b, m.Offset); err != nil {
		putOut(b)
		return nil, false
	}
	t := b[len(b)-8:]
	if sha256.Sum256(b) != m.Sum || string(b[:len(header)]) != string(header) ||
		binary.LittleEndian.Uint32(t) != want.CRC || binary.LittleEndian.Uint32(t[4:]) != uint32(want.USize) {
		putOut(b)
		return nil, false
	}
	return b, true
}

// header is what every member starts with: magic, deflate, no flags, mtime 0, XFL 0, OS 255.
var header = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}

var gzPool = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, level)
	return zw
}}

type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }

// outPool recycles compressed-member buffers (the drain goroutine returns them once written).
var outPool sync.Pool

func getOut(n int) []byte {
	if b, ok := outPool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, max(n, 64<<10))
}

func putOut(b []byte) {
	b = b[:0]
	outPool.Put(&b)
}

func compress(data []byte) []byte {
	// Deflate never grows data by more than a few bytes per 64 KiB stored block, so this
	// capacity is enough even for incompressible members.
	sw := &sliceWriter{b: getOut(len(data) + len(data)/1024 + 256)}
	zw := gzPool.Get().(*gzip.Writer)
	zw.Reset(sw)
	zw.ModTime = time.Unix(0, 0) // MTIME 0 ("none"); the zero time.Time would write a garbage value
	zw.Write(data)               // writes to memory: cannot fail
	zw.Close()
	gzPool.Put(zw)
	return sw.b
}

// drain writes finished members in order.
func (w *Writer) drain() {
	defer close(w.done)
	for j := range w.inflight {
		<-j.ready
		w.mu.Lock()
		bad := w.err != nil
		w.mu.Unlock()
		if !bad {
			k := len(w.members)
			j.m.End = w.hashMember(k, j)
			var err error
			j.m.BlobEnd, err = w.writeMember(k, j)
			w.mu.Lock()
			if err != nil {
				w.err = fmt.Errorf("write layer blob: %w", err)
			}
			j.m.Offset, j.m.Size = w.offset, int64(len(j.out))
			w.offset += j.m.Size
			w.members = append(w.members, j.m)
			w.stats.Members++
			if j.reuse {
				w.stats.Reused++
				w.stats.ReusedBytes += j.m.USize
			} else {
				w.stats.Compressed++
			}
			if j.fail {
				w.stats.Fallbacks++
			}
			w.mu.Unlock()
		}
		buf := j.data[:0]
		bufPool.Put(&buf)
		if j.out != nil {
			putOut(j.out)
		}
		j.data, j.out = nil, nil
	}
}

// hashMember adds member k's bytes to the diffID, or skips them while the tar still follows
// the source's members (see Writer), and returns the diffID's state after them. Only the drain
// goroutine calls it, in member order.
func (w *Writer) hashMember(k int, j *job) []byte {
	if w.inSync {
		if k < len(w.order) && w.order[k].Key == j.m.Key {
			w.resume = w.order[k].End
			w.mu.Lock()
			w.stats.UnhashedBytes += j.m.USize
			w.mu.Unlock()
			return w.resume
		}
		w.leaveSync()
	}
	w.diffID.Write(j.data)
	return marshalState(w.diffID)
}

// writeMember writes member k's compressed bytes to out and returns out's hash state after
// them (nil when out is no StateWriter). While the compressed members so far, this one
// included, have the Sums of the source's first members in order, the blob so far is that
// blob's prefix byte for byte, and its digest's state is the one the source recorded: the bytes
// are written without being hashed. Only the drain goroutine calls it, in member order.
func (w *Writer) writeMember(k int, j *job) ([]byte, error) {
	if w.sw == nil {
		_, err := w.out.Write(j.out)
		return nil, err
	}
	if w.blobInSync && k < len(w.order) && w.order[k].Sum == j.m.Sum {
		w.mu.Lock()
		w.stats.UnhashedBlobBytes += int64(len(j.out))
		w.mu.Unlock()
		return w.order[k].BlobEnd, w.sw.WriteKnown(j.out, w.order[k].BlobEnd)
	}
	w.blobInSync = false
	if _, err := w.sw.Write(j.out); err != nil {
		return nil, err
	}
	return w.sw.HashState()
}

// leaveSync makes the diffID hold the state of the prefix taken in sync, from where hashing
// goes on. statesUsable checked that the state unmarshals.
func (w *Writer) leaveSync() {
	w.inSync = false
	if w.resume != nil {
		if err := w.diffID.(encoding.BinaryUnmarshaler).UnmarshalBinary(w.resume); err != nil {
			panic("layerblob: checked diffID state does not unmarshal: " + err.Error())
		}
	}
}

func marshalState(h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("layerblob: sha256 state does not marshal: " + err.Error())
	}
	return b
}

// Close ends the last member and waits for every member to be written. It returns the blob's
// member index and the diffID (sha256 of all the tar bytes written).
func (w *Writer) Close() (*Index, digest.Digest, Stats, error) {
	if w.closed {
		return nil, "", Stats{}, errors.New("layerblob: writer closed twice")
	}
	w.closed = true
	err := w.cut()
	close(w.jobs)
	close(w.inflight)
	w.workers.Wait()
	<-w.done
	if err == nil {
		err = w.failed()
	}
	if err != nil {
		return nil, "", Stats{}, err
	}
	if w.inSync {
		w.leaveSync()
	}
	if len(w.members) == 0 {
		// An empty tar is still a blob: one member holding nothing.
		out := compress(nil)
		if _, err := w.out.Write(out); err != nil {
			return nil, "", Stats{}, fmt.Errorf("write layer blob: %w", err)
		}
		m := Member{Key: sha256.Sum256(nil), Size: int64(len(out)), CRC: 0, Sum: sha256.Sum256(out), End: marshalState(w.diffID)}
		if w.sw != nil {
			if m.BlobEnd, err = w.sw.HashState(); err != nil {
				return nil, "", Stats{}, fmt.Errorf("write layer blob: %w", err)
			}
		}
		w.members = append(w.members, m)
		w.stats.Members, w.stats.Compressed = 1, 1
	}
	return &Index{Compressor: Compressor, Members: w.members}, digest.NewDigest(digest.SHA256, w.diffID), w.stats, nil
}

// Abort stops the writer without finishing the blob (the caller discards what out received).
func (w *Writer) Abort() {
	if w.closed {
		return
	}
	w.closed = true
	w.mu.Lock()
	if w.err == nil {
		w.err = errors.New("layerblob: aborted")
	}
	w.mu.Unlock()
	close(w.jobs)
	close(w.inflight)
	w.workers.Wait()
	<-w.done
}
