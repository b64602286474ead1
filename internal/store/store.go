// Package store is strata's on-disk state: content-addressed blobs, unpacked layer snapshots, the
// cache index (step key → result), local image tags and cache-mount directories. Every file becomes
// visible only complete (temp file, fsync, rename), so several strata processes can share one store
// and a killed build never leaves anything half-written behind a real name.
package store

import (
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/atomicfile"
)

// Store is one store root.
type Store struct {
	root    string
	lock    *os.File // shared flock held while a build runs; prune takes it exclusively
	tmpDir  string   // this process's scratch dir under tmp/, removed on Close
	tmpLock *os.File // flock on tmpDir/.lock proves the owner is alive
	used    lease    // what this process read or wrote; GC after a build never removes it
	// exclusive is set while the store lock is held exclusively (GC may run).
	exclusive bool
}

// DefaultRoot is /var/lib/strata for root, $XDG_DATA_HOME/strata otherwise; STRATA_ROOT overrides.
func DefaultRoot() string {
	if r := os.Getenv("STRATA_ROOT"); r != "" {
		return r
	}
	if os.Geteuid() == 0 {
		return "/var/lib/strata"
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "strata")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share", "strata")
}

var dirs = []string{"blobs/sha256", "layers", "snapshots", "cache", "tags", "resolved", "cachemounts", "tmp", "statcache", "records", "selections", "members", "outputs", "snapfiles"}

// Open creates the layout if needed, takes the shared lock, and clears scratch dirs left by dead
// processes. exclusive is for prune/GC, which must not run beside a build.
func Open(root string, exclusive bool) (*Store, error) {
	return open(root, exclusive, true)
}

// OpenNoWait is Open that fails with ErrBusy instead of waiting for the lock (for prune: builds
// running; for a build: a prune or GC running).
func OpenNoWait(root string, exclusive bool) (*Store, error) {
	return open(root, exclusive, false)
}

func open(root string, exclusive, wait bool) (*Store, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("open store %s: %w", root, err)
		}
	}
	s := &Store{root: root}
	lf, err := os.OpenFile(filepath.Join(root, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store lock: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(lf.Fd()), how); err != nil {
		lf.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("lock store %s: %w", root, err)
	}
	s.lock = lf
	s.exclusive = exclusive
	s.cleanStaleTmp()
	// The scratch dir is created and locked under a name cleanStaleTmp leaves alone, then renamed
	// into place: another process opening the store at the same moment must never see it unlocked
	// and delete it as stale.
	newTmp, err := os.MkdirTemp(filepath.Join(root, "tmp"), newScratchPrefix+"p"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("store scratch dir: %w", err)
	}
	tl, err := os.OpenFile(filepath.Join(newTmp, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(tl.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	tmp := filepath.Join(root, "tmp", strings.TrimPrefix(filepath.Base(newTmp), newScratchPrefix))
	if err == nil {
		err = os.Rename(newTmp, tmp)
	}
	if err != nil {
		if tl != nil {
			tl.Close()
		}
		os.RemoveAll(newTmp)
		s.Close()
		return nil, fmt.Errorf("store scratch lock: %w", err)
	}
	s.tmpDir, s.tmpLock = tmp, tl
	return s, nil
}

// newScratchPrefix marks a scratch dir still being set up by Open.
const newScratchPrefix = ".new-"

// cleanStaleTmp removes scratch dirs whose owner no longer holds their lock (a killed build).
func (s *Store) cleanStaleTmp() {
	ents, _ := os.ReadDir(filepath.Join(s.root, "tmp"))
	for _, e := range ents {
		p := filepath.Join(s.root, "tmp", e.Name())
		if strings.HasPrefix(e.Name(), newScratchPrefix) && !s.exclusive {
			// Perhaps being set up by a concurrent Open (which holds the shared lock, so under our
			// exclusive lock none can be): only one left by a crash long ago is stale.
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
		}
		f, err := os.Open(filepath.Join(p, ".lock"))
		if err == nil {
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
				f.Close()
				continue // owner alive
			}
			f.Close()
		}
		// A dead build may have left a mount under its scratch dir (when it ran outside a private
		// mount namespace); detach before removing so we never delete through a mount.
		detachMounts(p)
		os.RemoveAll(p)
	}
}

// Close releases locks and this process's scratch dir.
func (s *Store) Close() error {
	if s.tmpDir != "" {
		detachMounts(s.tmpDir)
		os.RemoveAll(s.tmpDir)
		s.tmpLock.Close()
		s.tmpDir = ""
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	return nil
}

// Root is the store directory.
func (s *Store) Root() string { return s.root }

// TempDir makes a fresh scratch directory that disappears with the process's scratch dir.
func (s *Store) TempDir(prefix string) (string, error) {
	return os.MkdirTemp(s.tmpDir, prefix)
}

// ---- blobs ----

// BlobPath is where a blob lives (it may not exist).
func (s *Store) BlobPath(d digest.Digest) string {
	return filepath.Join(s.root, "blobs", d.Algorithm().String(), d.Encoded())
}

// Path satisfies export.BlobOpener.
func (s *Store) Path(d digest.Digest) string { return s.BlobPath(d) }

// Has reports whether the blob is present.
func (s *Store) Has(d digest.Digest) bool {
	if d.Validate() != nil {
		return false
	}
	_, err := os.Stat(s.BlobPath(d))
	return err == nil
}

// Open opens a blob.
func (s *Store) Open(d digest.Digest) (io.ReadCloser, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob %q: %w", d, err)
	}
	f, err := os.Open(s.BlobPath(d))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return f, nil
}

// ReadBlob reads a small blob (manifest, config) whole.
func (s *Store) ReadBlob(d digest.Digest) ([]byte, error) {
	rc, err := s.Open(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Ingest stores r under d, verifying the content; a no-op when the blob is already present.
func (s *Store) Ingest(d digest.Digest, r io.Reader) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if s.Has(d) {
		s.used.add(leaseBlob, d.Encoded())
		_, err := io.Copy(io.Discard, r)
		return err
	}
	w, err := s.NewBlobWriter()
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("ingest %s: %w", d, err)
	}
	got, _, err := w.Commit()
	if err != nil {
		return err
	}
	if got != d {
		os.Remove(s.BlobPath(got))
		return fmt.Errorf("ingest %s: content has digest %s", d, got)
	}
	return nil
}

// WriteBlob stores small data and returns its digest.
func (s *Store) WriteBlob(data []byte) (digest.Digest, error) {
	d := digest.FromBytes(data)
	if s.Has(d) {
		s.used.add(leaseBlob, d.Encoded())
		return d, nil
	}
	w, err := s.NewBlobWriter()
	if err != nil {
		return "", err
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		return "", err
	}
	_, _, err = w.Commit()
	return d, err
}

// BlobWriter hashes what is written and makes it a blob on Commit.
type BlobWriter struct {
	s    *Store
	f    *os.File
	h    hashWriter
	n    int64
	done bool
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

// NewBlobWriter starts a blob in the scratch dir.
func (s *Store) NewBlobWriter() (*BlobWriter, error) {
	f, err := os.CreateTemp(s.tmpDir, "blob-")
	if err != nil {
		return nil, fmt.Errorf("new blob: %w", err)
	}
	return &BlobWriter{s: s, f: f, h: sha256.New()}, nil
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// HashState is the state of the blob digest's sha256 after what was written so far (see
// layerblob.StateWriter).
func (w *BlobWriter) HashState() ([]byte, error) {
	m, ok := w.h.(encoding.BinaryMarshaler)
	if !ok {
		return nil, errors.New("blob digest state cannot be saved")
	}
	return m.MarshalBinary()
}

// WriteKnown writes p without hashing it: state is the digest's state once p is written, as a
// layer blob writer knows when p continues a prefix it copied from an earlier blob whose states
// it recorded (see layerblob.Writer).
func (w *BlobWriter) WriteKnown(p, state []byte) error {
	u, ok := w.h.(encoding.BinaryUnmarshaler)
	if !ok {
		return errors.New("blob digest state cannot be restored")
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	if err != nil {
		return err
	}
	return u.UnmarshalBinary(state)
}

// Commit fsyncs and renames the blob into place, returning its digest and size. The blob's mtime
// gets the store's stamp (see Vouched).
func (w *BlobWriter) Commit() (digest.Digest, int64, error) {
	d := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(w.h.Sum(nil)))
	stamp(w.f) // best effort: an unstamped blob is hashed when exported
	if err := w.f.Sync(); err != nil {
		return "", 0, fmt.Errorf("blob %s: %w", d, err)
	}
	if err := w.f.Close(); err != nil {
		return "", 0, fmt.Errorf("blob %s: %w", d, err)
	}
	w.done = true
	if err := os.Rename(w.f.Name(), w.s.BlobPath(d)); err != nil {
		os.Remove(w.f.Name())
		return "", 0, fmt.Errorf("blob %s: %w", d, err)
	}
	w.s.used.add(leaseBlob, d.Encoded())
	return d, w.n, nil
}

// blobStampNsec is the nanosecond part of the mtime the store gives a blob it has verified (its
// seconds are the moment of stamping). A write to the file afterwards sets its mtime from the
// clock, whose nanoseconds are this value about once in a billion writes.
const blobStampNsec = 271_828_182

// stamp marks f as holding what the store verified it holds.
func stamp(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	ts := [2]unix.Timespec{st.Atim, {Sec: time.Now().Unix(), Nsec: blobStampNsec}}
	// futimens(2): utimensat with a NULL path acts on the descriptor, which may be read-only.
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// Vouched reports whether a blob file opened by Open still holds the size bytes the store
// verified it to hold, without reading them: it is a regular file of that size whose mtime
// carries the stamp the store gave it when it wrote the blob (the digest computed over the bytes
// as they were written, then fsync and rename) or last hashed it. Nothing in strata opens a blob
// for writing, but blobs are hardlinked into OCI layouts and local cache directories, where
// another tool could write into one; any write resets the mtime and loses the stamp, so such a
// blob is hashed again. What this cannot see is the disk itself flipping bits under an unchanged
// inode: `strata store verify` hashes every blob for that, and whatever reads the archive
// (docker load, skopeo, containerd, a registry on push) checks digests too.
func (s *Store) Vouched(d digest.Digest, f *os.File, size int64) bool {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size == size && st.Mtim.Nsec == blobStampNsec
}

// Verified stamps a blob file the caller has just hashed and found to hold d, so later exports
// may trust it (blobs of a store written before stamps existed, or whose stamp was lost).
func (s *Store) Verified(d digest.Digest, f *os.File) {
	stamp(f) // best effort, as in Commit
}

// Abort drops an uncommitted blob; safe after Commit.
func (w *BlobWriter) Abort() {
	if !w.done {
		w.f.Close()
		os.Remove(w.f.Name())
		w.done = true
	}
}

// ---- small JSON files ----

func writeJSON(tmpDir, path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, atomicfile.Options{Scratch: tmpDir}); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readJSON returns fs.ErrNotExist for a missing file and treats a corrupt file as missing, so a
// damaged index entry costs a rebuild, never a wrong result.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fs.ErrNotExist
	}
	return nil
}

// ---- layers and snapshots ----

// Layer is what the store knows about one layer, keyed by its diffID.
type Layer struct {
	DiffID    digest.Digest `json:"diffID"`
	Digest    digest.Digest `json:"digest"` // compressed blob
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	// ContentID identifies the files without timestamps (see snapshot.DiffResult); pulled layers
	// use their diffID.
	ContentID digest.Digest `json:"contentID"`
	// Remote is a repository (host/path) the blob can be fetched from when the store does not
	// hold it yet: a layer known from an imported cache or a lazily pulled image. Its bytes are
	// fetched (and verified) only when something needs them.
	Remote string `json:"remote,omitempty"`
}

// Available reports whether the layer's bytes are in the store or can be fetched.
func (s *Store) Available(l Layer) bool {
	return s.Has(l.Digest) || l.Remote != ""
}

func (s *Store) layerPath(diffID digest.Digest) string {
	return filepath.Join(s.root, "layers", diffID.Encoded()+".json")
}

// PutLayer records a layer's blob and identities.
func (s *Store) PutLayer(l Layer) error {
	if err := l.DiffID.Validate(); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	s.used.add(leaseLayer, l.DiffID.Encoded())
	return writeJSON(s.tmpDir, s.layerPath(l.DiffID), l)
}

// GetLayer returns the layer record for diffID.
func (s *Store) GetLayer(diffID digest.Digest) (Layer, error) {
	var l Layer
	if diffID.Validate() != nil {
		return l, fs.ErrNotExist
	}
	err := readJSON(s.layerPath(diffID), &l)
	if err == nil {
		s.used.add(leaseLayer, diffID.Encoded())
	}
	return l, err
}

// ForgetLayer removes a lazy layer whose blob its Remote no longer has, and the cache records
// naming it, so the steps that made it miss and run again (a layer no record names is kept). Records go first: a crash in between
// leaves a layer no record names, which is fine, never a record naming no layer. A layer whose
// blob the store holds is kept: nothing is lost. It reports how many records it removed.
func (s *Store) ForgetLayer(diffID digest.Digest) (int, error) {
	l, err := s.GetLayer(diffID)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if s.Has(l.Digest) {
		return 0, nil
	}
	recs, err := s.Records()
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	n := 0
	for _, r := range recs {
		if r.Empty || r.Layer != diffID {
			continue
		}
		if err := os.Remove(s.recordPath(r.Key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, fmt.Errorf("forget record %s: %w", r.Key, err)
		}
		n++
	}
	if n == 0 {
		// No step made it here (a lazily pulled base image's layer): an image still names it,
		// and forgetting it would leave that image broken rather than make anything run again.
		return 0, nil
	}
	if err := os.Remove(s.layerPath(diffID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return n, fmt.Errorf("forget layer %s: %w", diffID, err)
	}
	return n, nil
}

// SnapshotPath is the unpacked (overlay-format) directory of a layer.
func (s *Store) SnapshotPath(diffID digest.Digest) string {
	return filepath.Join(s.root, "snapshots", diffID.Encoded())
}

// HasSnapshot reports whether the layer is unpacked.
func (s *Store) HasSnapshot(diffID digest.Digest) bool {
	_, err := os.Stat(s.SnapshotPath(diffID))
	return err == nil
}

// CommitSnapshot moves a finished directory into place as diffID's snapshot. If another process
// got there first, ours is discarded: both are the same content.
func (s *Store) CommitSnapshot(dir string, diffID digest.Digest) error {
	s.used.add(leaseLayer, diffID.Encoded())
	dst := s.SnapshotPath(diffID)
	if err := os.Rename(dir, dst); err != nil {
		if s.HasSnapshot(diffID) {
			os.RemoveAll(dir)
			return nil
		}
		return fmt.Errorf("commit snapshot %s: %w", diffID, err)
	}
	return nil
}

// ---- cache index ----

// Record is the result of one step, found by its cache key.
type Record struct {
	Key   string        `json:"key"`
	Step  string        `json:"step"` // e.g. "build 3/6 RUN npm ci", for explanations
	Layer digest.Digest `json:"layer,omitempty"`
	Empty bool          `json:"empty,omitempty"` // the step changed no file
	// Size is the layer's blob size (0 for an empty step); GC and `strata du` report it.
	Size    int64         `json:"size,omitempty"`
	Created time.Time     `json:"created"`
	Elapsed time.Duration `json:"elapsed"` // how long the step took when it ran
	// The last use is the record file's mtime, set by GetRecord (see Records).
	// Inputs summarises what the key was made of, so a later miss can say what changed.
	Inputs map[string]string `json:"inputs,omitempty"`
}

func (s *Store) recordPath(key string) string {
	return filepath.Join(s.root, "cache", key+".json")
}

// GetRecord looks up a key. A record whose layer is gone counts as missing.
func (s *Store) GetRecord(key string) (*Record, error) {
	if !validKey(key) {
		return nil, fs.ErrNotExist
	}
	var r Record
	if err := readJSON(s.recordPath(key), &r); err != nil {
		return nil, err
	}
	if !r.Empty {
		l, err := s.GetLayer(r.Layer)
		if err != nil || !s.Available(l) {
			return nil, fs.ErrNotExist
		}
	}
	s.used.add(leaseRecord, key)
	now := time.Now()
	os.Chtimes(s.recordPath(key), now, now) // last used, for GC
	return &r, nil
}

// PutRecord stores a step result.
func (s *Store) PutRecord(r *Record) error {
	if !validKey(r.Key) {
		return fmt.Errorf("record: bad key %q", r.Key)
	}
	s.used.add(leaseRecord, r.Key)
	return writeJSON(s.tmpDir, s.recordPath(r.Key), r)
}

func validKey(k string) bool {
	if len(k) != 64 {
		return false
	}
	_, err := hex.DecodeString(k)
	return err == nil
}

// ---- position history (for miss reasons) ----

// Last returns the inputs recorded the last time a step at this position (Dockerfile identity +
// stage + position) ran or hit, so a miss can be explained against it.
func (s *Store) Last(position string) (map[string]string, error) {
	var m map[string]string
	err := readJSON(filepath.Join(s.root, "records", hashName(position)+".json"), &m)
	return m, err
}

// SetLast records the inputs of a step position. It writes only when they changed, and without
// fsync: the summary only words a later miss reason, so losing it to a crash costs nothing real.
func (s *Store) SetLast(position string, inputs map[string]string) error {
	p := filepath.Join(s.root, "records", hashName(position)+".json")
	var prev map[string]string
	if readJSON(p, &prev) == nil && maps.Equal(prev, inputs) {
		return nil
	}
	data, err := json.Marshal(inputs)
	if err != nil {
		return err
	}
	return writeNoSync(s.tmpDir, p, data)
}

func hashName(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}

// ---- selection memos ----

// SelectionMemo is what one selection in a stage's or image's filesystem came to (see the
// solver's memoKey): enough to compute a step's key and explain its misses without mounting
// that filesystem, and so without fetching its layers.
type SelectionMemo struct {
	KeyDigest string        `json:"keyDigest"` // the selection as a COPY's key reads it (--chmod/--chown applied)
	Digest    digest.Digest `json:"digest"`    // the selection's checksum (what a bind mount's key reads)
	Files     int           `json:"files"`     // files selected
	// Summary is path → signature of every selected file, for miss reasons; kept only when the
	// solver keeps per-file entries (few enough files), nil otherwise.
	Summary map[string]string `json:"summary,omitempty"`
}

// Valid reports whether a memo is well formed (a damaged one counts as missing).
func (m SelectionMemo) Valid() bool {
	if m.Digest.Validate() != nil || m.Files < 0 {
		return false
	}
	return digest.Digest(m.KeyDigest).Validate() == nil
}

func (s *Store) selectionPath(memoKey string) string {
	return filepath.Join(s.root, "selections", memoKey+".json")
}

// GetSelection returns the memo stored under memoKey (fs.ErrNotExist when there is none or it
// is damaged).
//
// Memos are not tracked by GC: each is a tiny pure function of content (the key names the
// filesystem's content identity and the patterns), so one can never go stale, and one whose
// filesystem was evicted merely goes unused. A full prune clears them with the step history.
func (s *Store) GetSelection(memoKey string) (SelectionMemo, error) {
	var m SelectionMemo
	if !validKey(memoKey) {
		return m, fs.ErrNotExist
	}
	if err := readJSON(s.selectionPath(memoKey), &m); err != nil {
		return SelectionMemo{}, err
	}
	if !m.Valid() {
		return SelectionMemo{}, fs.ErrNotExist
	}
	return m, nil
}

// PutSelection stores a selection memo.
func (s *Store) PutSelection(memoKey string, m SelectionMemo) error {
	if !validKey(memoKey) {
		return fmt.Errorf("selection memo: bad key %q", memoKey)
	}
	if !m.Valid() {
		return fmt.Errorf("selection memo %s: malformed", memoKey)
	}
	return writeJSON(s.tmpDir, s.selectionPath(memoKey), m)
}

// ---- tags ----

// Tag points name at a manifest digest.
func (s *Store) Tag(name string, manifest digest.Digest) error {
	s.used.add(leaseImage, manifest.String())
	p := filepath.Join(s.root, "tags", url.PathEscape(name))
	if cur, err := os.ReadFile(p); err == nil && string(cur) == manifest.String() {
		// A rebuild that changed nothing writes nothing: the tag already says this (tags
		// are pinned, so their mtime means nothing to GC).
		return nil
	}
	return atomicfile.Write(p, []byte(manifest.String()), atomicfile.Options{Scratch: s.tmpDir})
}

// Lookup returns the manifest digest a tag points at.
func (s *Store) Lookup(name string) (digest.Digest, error) {
	data, err := os.ReadFile(filepath.Join(s.root, "tags", url.PathEscape(name)))
	if err != nil {
		return "", err
	}
	d, err := digest.Parse(strings.TrimSpace(string(data)))
	if err != nil || !s.Has(d) {
		return "", fs.ErrNotExist
	}
	s.used.add(leaseImage, d.String())
	return d, nil
}

// Untag removes a tag.
func (s *Store) Untag(name string) error {
	err := os.Remove(filepath.Join(s.root, "tags", url.PathEscape(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no such image: %s", name)
	}
	return err
}

// Scratch is this process's scratch dir in the store ("" for a read-only open): writers outside
// the package put their temp files there, so a kill leaves none among the store's records.
func (s *Store) Scratch() string { return s.tmpDir }

// Tags lists name → manifest digest.
func (s *Store) Tags() (map[string]digest.Digest, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "tags"))
	if err != nil {
		return nil, err
	}
	out := map[string]digest.Digest{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		name, err := url.PathUnescape(e.Name())
		if err != nil {
			continue
		}
		if d, err := s.Lookup(name); err == nil {
			out[name] = d
		}
	}
	return out, nil
}

// ---- remote reference resolution memo ----

// Resolved returns the manifest digest a remote reference resolved to last time.
// Using it counts as a use of the pulled image for GC (the entry's mtime is its last use).
func (s *Store) Resolved(ref string) (digest.Digest, error) {
	p := filepath.Join(s.root, "resolved", url.PathEscape(ref))
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	d, err := digest.Parse(strings.TrimSpace(string(data)))
	if err != nil || !s.Has(d) {
		return "", fs.ErrNotExist
	}
	s.used.add(leaseResolved, url.PathEscape(ref))
	s.used.add(leaseImage, d.String())
	now := time.Now()
	os.Chtimes(p, now, now)
	return d, nil
}

// SetResolved remembers what a remote reference resolved to.
func (s *Store) SetResolved(ref string, d digest.Digest) error {
	s.used.add(leaseResolved, url.PathEscape(ref))
	s.used.add(leaseImage, d.String())
	return atomicfile.Write(filepath.Join(s.root, "resolved", url.PathEscape(ref)), []byte(d.String()), atomicfile.Options{Scratch: s.tmpDir})
}

// ---- cache mounts and stat caches ----

// CacheMountDir is the persistent directory behind RUN --mount=type=cache,id=ID.
func (s *Store) CacheMountDir(id string) (string, error) {
	p := filepath.Join(s.root, "cachemounts", hashName(id))
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", fmt.Errorf("cache mount %s: %w", id, err)
	}
	s.used.add(leaseMount, hashName(id))
	now := time.Now()
	os.Chtimes(p, now, now) // last used, for GC
	return p, nil
}

// StatCachePath is the stat cache file for a context directory (the absolute path only names the
// file; it never enters a key).
func (s *Store) StatCachePath(contextDir string) string {
	return filepath.Join(s.root, "statcache", hashName(contextDir)+".json")
}
