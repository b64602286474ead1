package layerblob_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/layerblob"
	"github.com/strata-build/strata/internal/snapshot"
)

// makeTree writes files of text-like content (compressible, as source trees are): n small files
// in nested dirs, plus a few big ones, one above MaxMember so it is split.
func makeTree(t testing.TB, dir string, n int, smallSize int, bigs ...int) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"func ", "return ", "if err != nil ", "{\n", "}\n", "package ", "import ", "var ", "x := ", "// comment ", "string", "int64 ", "\t"}
	text := func(size int) []byte {
		var b bytes.Buffer
		for b.Len() < size {
			b.WriteString(words[r.IntN(len(words))])
			fmt.Fprintf(&b, "%d", r.IntN(1000))
		}
		return b.Bytes()[:size]
	}
	mtime := time.Unix(1700000000, 0)
	write := func(p string, data []byte) {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(full, mtime, mtime)
	}
	for i := range n {
		write(fmt.Sprintf("src/d%02d/f%05d.go", i%50, i), text(1+r.IntN(2*smallSize)))
	}
	for i, size := range bigs {
		write(fmt.Sprintf("big/b%d.bin", i), text(size))
	}
	for i := range 50 {
		d := filepath.Join(dir, fmt.Sprintf("src/d%02d", i))
		os.Chtimes(d, mtime, mtime)
	}
	for _, d := range []string{"src", "big"} {
		os.Chtimes(filepath.Join(dir, d), mtime, mtime)
	}
}

type blob struct {
	data  []byte
	index *layerblob.Index
	diff  digest.Digest
	stats layerblob.Stats
}

func commit(t testing.TB, dir string, srcs ...layerblob.Source) blob {
	t.Helper()
	var out bytes.Buffer
	w := layerblob.NewWriter(&out, srcs...)
	if _, err := snapshot.Diff(dir, w); err != nil {
		t.Fatal(err)
	}
	idx, d, st, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return blob{out.Bytes(), idx, d, st}
}

func (b blob) source() layerblob.Source {
	return layerblob.Source{Blob: bytes.NewReader(b.data), Index: b.index}
}

// plainTar is Diff's tar through a plain writer (no member hooks): the bytes the blob must hold.
func plainTar(t *testing.T, dir string) []byte {
	var b bytes.Buffer
	if _, err := snapshot.Diff(dir, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBlobIsGzipOfDiffTar(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, 600, 4<<10, 300<<10, 9<<20)
	b := commit(t, dir)
	tarBytes := plainTar(t, dir)
	if got := gunzip(t, b.data); !bytes.Equal(got, tarBytes) {
		t.Fatalf("blob decompresses to %d bytes, Diff's tar has %d (or differs)", len(got), len(tarBytes))
	}
	if want := digest.FromBytes(tarBytes); b.diff != want {
		t.Errorf("diffID %s, sha256 of the tar %s", b.diff, want)
	}
	if b.stats.Members < 10 {
		t.Errorf("only %d members for 600 files and two big ones", b.stats.Members)
	}
	// Every member is a complete gzip stream with the fixed header, where the index says.
	x, err := layerblob.Decode(b.index.Encode(), int64(len(b.data)))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for i, m := range x.Members {
		part := b.data[m.Offset : m.Offset+m.Size]
		if !bytes.Equal(part[:10], []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}) {
			t.Fatalf("member %d header % x", i, part[:10])
		}
		zr, err := gzip.NewReader(bytes.NewReader(part))
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		u, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		if sha256.Sum256(u) != m.Key || int64(len(u)) != m.USize || m.USize > layerblob.MaxMember {
			t.Fatalf("member %d: key or length do not match its bytes (%d)", i, len(u))
		}
		total += m.USize
	}
	if total != int64(len(tarBytes)) {
		t.Errorf("members hold %d bytes, tar has %d", total, len(tarBytes))
	}
}

func TestIncrementalEqualsCold(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, 2000, 4<<10, 1<<20, 9<<20)
	first := commit(t, dir)
	if again := commit(t, dir); !bytes.Equal(again.data, first.data) {
		t.Fatal("two cold commits of the same tree differ")
	}

	// One small file changes (same mtime, as a checkout would give): the incremental blob copies
	// all but its member and is byte-identical to a cold one.
	p := filepath.Join(dir, "src/d07/f01007.go")
	if err := os.WriteFile(p, []byte("package edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 0)
	os.Chtimes(p, mtime, mtime)
	cold := commit(t, dir)
	inc := commit(t, dir, first.source())
	if !bytes.Equal(inc.data, cold.data) || inc.diff != cold.diff {
		t.Fatalf("incremental blob (%d bytes) differs from cold (%d bytes)", len(inc.data), len(cold.data))
	}
	if inc.stats.Compressed > 2 || inc.stats.Reused != inc.stats.Members-inc.stats.Compressed || inc.stats.Reused < 10 {
		t.Errorf("one edit: %+v, want all but one or two members reused", inc.stats)
	}
	if cold.stats.Reused != 0 {
		t.Errorf("cold commit reused %d members", cold.stats.Reused)
	}

	// A new file in the middle moves cuts only locally.
	if err := os.WriteFile(filepath.Join(dir, "src/d20/new.go"), bytes.Repeat([]byte("new file\n"), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	cold = commit(t, dir)
	inc = commit(t, dir, first.source())
	if !bytes.Equal(inc.data, cold.data) {
		t.Fatal("incremental blob after an added file differs from cold")
	}
	if inc.stats.Compressed > 4 {
		t.Errorf("one added file and one edit: %+v", inc.stats)
	}
}

// A source whose bytes do not back its index (damaged blob, lying index, unreadable blob) never
// gives a wrong blob: those members are compressed instead.
func TestBadSourcesFallBack(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, 800, 4<<10, 1<<20)
	first := commit(t, dir)

	damaged := bytes.Clone(first.data)
	for _, m := range first.index.Members {
		damaged[m.Offset+m.Size-3] ^= 0xff // each trailer's length field
	}
	// The deflate data itself damaged, header and trailer intact: only inflating can tell.
	damagedBody := bytes.Clone(first.data)
	for _, m := range first.index.Members {
		damagedBody[m.Offset+m.Size/2] ^= 0x55
	}
	lying := &layerblob.Index{Compressor: layerblob.Compressor, Members: bytes2members(first.index.Members)}
	otherCompressor := &layerblob.Index{Compressor: "other", Members: first.index.Members}
	for name, src := range map[string]layerblob.Source{
		"damaged blob":     {Blob: bytes.NewReader(damaged), Index: first.index},
		"damaged deflate":  {Blob: bytes.NewReader(damagedBody), Index: first.index},
		"unreadable blob":  {Blob: failingReader{}, Index: first.index},
		"lying index":      {Blob: bytes.NewReader(first.data), Index: lying},
		"other compressor": {Blob: bytes.NewReader(first.data), Index: otherCompressor},
	} {
		got := commit(t, dir, src)
		if !bytes.Equal(got.data, first.data) {
			t.Errorf("%s: blob differs from a cold one", name)
		}
		if got.stats.Reused != 0 {
			t.Errorf("%s: %d members copied", name, got.stats.Reused)
		}
	}

	// A damaged or truncated index file does not decode.
	enc := first.index.Encode()
	for name, bad := range map[string][]byte{
		"flipped byte": func() []byte { b := bytes.Clone(enc); b[len(b)/2] ^= 1; return b }(),
		"truncated":    enc[:len(enc)-10],
		"empty":        nil,
	} {
		if _, err := layerblob.Decode(bad, int64(len(first.data))); err == nil {
			t.Errorf("%s index decoded", name)
		}
	}
	if _, err := layerblob.Decode(enc, int64(len(first.data))+1); err == nil {
		t.Error("index decoded against a blob of another size")
	}
}

// bytes2members rotates keys so each key names another member's bytes: offsets still tile the
// blob and the checksum is right, only the claims are wrong.
func bytes2members(ms []layerblob.Member) []layerblob.Member {
	out := append([]layerblob.Member(nil), ms...)
	for i := range out {
		out[i].Key = ms[(i+1)%len(ms)].Key
	}
	return out
}

type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("gone") }

// Compressor must name the compression library the module requires: a store keeps member
// indexes across strata upgrades, and an index whose Compressor still matched after the library
// changed would have new blobs copy members compressed by the old one, so an incremental blob
// would no longer be byte-identical to a cold one in a fresh store. (Test binaries carry no
// dependency versions in their build info, so this reads go.mod.)
func TestCompressorNamesLibraryVersion(t *testing.T) {
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/klauspost/compress v(\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/klauspost/compress")
	}
	if bytes.Contains(gomod, []byte("github.com/klauspost/compress =>")) {
		t.Fatal("go.mod replaces github.com/klauspost/compress: name the replacement in Compressor and here")
	}
	if want := "klauspost-compress-" + string(m[1]) + "/"; !strings.HasPrefix(layerblob.Compressor, want) {
		t.Errorf("Compressor is %q, but go.mod requires klauspost/compress v%s: change Compressor (to start with %q)", layerblob.Compressor, m[1], want)
	}
}

// The diffID of an incremental blob resumes from the source's recorded state for the members
// it shares in order from the start, and is the sha256 of the whole tar all the same; a source
// without usable states (a v1 index, states of another format) hashes everything.
func TestDiffIDResumesFromSourcePrefix(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, 1500, 4<<10, 1<<20)
	first := commit(t, dir)
	x, err := layerblob.Decode(first.index.Encode(), int64(len(first.data)))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range x.Members {
		if !bytes.Equal(m.End, first.index.Members[i].End) || m.End == nil {
			t.Fatalf("member %d: End state lost in encoding", i)
		}
	}
	decoded := layerblob.Source{Blob: bytes.NewReader(first.data), Index: x}

	// The last file in tar order changes: everything before its member is the source's prefix.
	p := filepath.Join(dir, "src/d49/f01499.go")
	if err := os.WriteFile(p, []byte("package edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 0)
	os.Chtimes(p, mtime, mtime)
	tarBytes := plainTar(t, dir)
	cold := commit(t, dir)
	inc := commit(t, dir, decoded)
	if !bytes.Equal(inc.data, cold.data) || inc.diff != cold.diff || inc.diff != digest.FromBytes(tarBytes) {
		t.Fatalf("incremental blob or diffID differs from cold (%s, %s)", inc.diff, cold.diff)
	}
	if total := int64(len(tarBytes)); inc.stats.UnhashedBytes < total*9/10 || inc.stats.UnhashedBytes >= total {
		t.Errorf("hashing skipped for %d of %d tar bytes, want most but not all", inc.stats.UnhashedBytes, total)
	}
	if cold.stats.UnhashedBytes != 0 {
		t.Errorf("cold commit skipped hashing %d bytes", cold.stats.UnhashedBytes)
	}
	// The incremental blob's own states are right: a third commit resumes from them.
	if again := commit(t, dir, inc.source()); again.diff != cold.diff || again.stats.UnhashedBytes != int64(len(tarBytes)) {
		t.Errorf("commit from the incremental blob: diffID %s (want %s), %d bytes unhashed", again.diff, cold.diff, again.stats.UnhashedBytes)
	}

	// An edit of the first file: nothing is in sync, so everything is hashed.
	p = filepath.Join(dir, "big/b0.bin")
	if err := os.WriteFile(p, []byte("small now\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, mtime, mtime)
	tarBytes = plainTar(t, dir)
	inc = commit(t, dir, decoded)
	if inc.diff != digest.FromBytes(tarBytes) || inc.stats.UnhashedBytes != 0 {
		t.Errorf("first file edited: diffID %s, want %s; %d bytes unhashed", inc.diff, digest.FromBytes(tarBytes), inc.stats.UnhashedBytes)
	}

	// States that do not unmarshal, or none (what a v1 index decodes to), are not used.
	for name, end := range map[string][]byte{"garbage": []byte("not a sha256 state"), "none": nil} {
		ms := append([]layerblob.Member(nil), first.index.Members...)
		for i := range ms {
			ms[i].End = end
		}
		src := layerblob.Source{Blob: bytes.NewReader(first.data), Index: &layerblob.Index{Compressor: layerblob.Compressor, Members: ms}}
		got := commit(t, dir, src)
		if got.diff != digest.FromBytes(tarBytes) || got.stats.UnhashedBytes != 0 {
			t.Errorf("%s states: diffID %s, %d bytes unhashed", name, got.diff, got.stats.UnhashedBytes)
		}
	}
}

// hashingBuffer is a StateWriter as the store's blob writer is: a buffer and a sha256 of it.
type hashingBuffer struct {
	bytes.Buffer
	h hash.Hash
}

func newHashingBuffer() *hashingBuffer { return &hashingBuffer{h: sha256.New()} }

func (b *hashingBuffer) Write(p []byte) (int, error) {
	b.h.Write(p)
	return b.Buffer.Write(p)
}

func (b *hashingBuffer) HashState() ([]byte, error) {
	return b.h.(encoding.BinaryMarshaler).MarshalBinary()
}

func (b *hashingBuffer) WriteKnown(p, state []byte) error {
	b.Buffer.Write(p)
	return b.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state)
}

func (b *hashingBuffer) digest() digest.Digest { return digest.NewDigest(digest.SHA256, b.h) }

// A blob written to a StateWriter records the digest's state after each member, and a later
// blob that shares a prefix of compressed members in order writes that prefix without hashing
// it: its digest is still the sha256 of its bytes.
func TestBlobDigestResumesFromSourcePrefix(t *testing.T) {
	dir := t.TempDir()
	makeTree(t, dir, 1500, 4<<10, 1<<20)
	commitTo := func(srcs ...layerblob.Source) (*hashingBuffer, *layerblob.Index, layerblob.Stats) {
		out := newHashingBuffer()
		w := layerblob.NewWriter(out, srcs...)
		if _, err := snapshot.Diff(dir, w); err != nil {
			t.Fatal(err)
		}
		idx, _, st, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		return out, idx, st
	}
	first, firstIdx, _ := commitTo()
	x, err := layerblob.Decode(firstIdx.Encode(), int64(first.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range x.Members {
		if m.BlobEnd == nil || !bytes.Equal(m.BlobEnd, firstIdx.Members[i].BlobEnd) {
			t.Fatalf("member %d: BlobEnd state missing or lost in encoding", i)
		}
	}
	src := layerblob.Source{Blob: bytes.NewReader(first.Bytes()), Index: x}

	p := filepath.Join(dir, "src/d49/f01499.go")
	if err := os.WriteFile(p, []byte("package edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1700000000, 0)
	os.Chtimes(p, mtime, mtime)
	cold, _, _ := commitTo()
	inc, incIdx, st := commitTo(src)
	if !bytes.Equal(inc.Bytes(), cold.Bytes()) || inc.digest() != digest.FromBytes(inc.Bytes()) {
		t.Fatalf("incremental blob differs from cold, or its digest %s is not its bytes' %s", inc.digest(), digest.FromBytes(inc.Bytes()))
	}
	if total := int64(inc.Len()); st.UnhashedBlobBytes < total*9/10 || st.UnhashedBlobBytes >= total {
		t.Errorf("blob hashing skipped for %d of %d bytes, want most but not all", st.UnhashedBlobBytes, total)
	}
	// Its recorded states are right too: a commit of the same tree from it hashes nothing.
	again, _, st := commitTo(layerblob.Source{Blob: bytes.NewReader(inc.Bytes()), Index: incIdx})
	if again.digest() != digest.FromBytes(inc.Bytes()) || st.UnhashedBlobBytes != int64(inc.Len()) {
		t.Errorf("commit from the incremental blob: digest %s, want %s; %d bytes unhashed", again.digest(), digest.FromBytes(inc.Bytes()), st.UnhashedBlobBytes)
	}
	// A plain writer gets no BlobEnd states, and a source without them is hashed throughout.
	plain := commit(t, dir)
	if plain.index.Members[0].BlobEnd != nil {
		t.Error("BlobEnd recorded for an out that keeps no hash")
	}
	noStates, _, st := commitTo(layerblob.Source{Blob: bytes.NewReader(plain.data), Index: plain.index})
	if noStates.digest() != digest.FromBytes(noStates.Bytes()) || st.UnhashedBlobBytes != 0 {
		t.Errorf("source without blob states: %d bytes unhashed", st.UnhashedBlobBytes)
	}
}
