package contenthash

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// racyMargin widens the racy window: Linux stamps files from a coarse clock that lags
// time.Now() by up to a tick, and some filesystems keep whole seconds, so an edit made just after
// we hashed can carry an mtime slightly before the hash started and look unchanged.
const racyMargin = 2 * time.Second

const statCacheMagic = "strata-statcache-v1\n"

// StatCache maps a file's stat signature to its content digest, like git's index, so a rebuild
// with nothing changed reads metadata only. It is safe for concurrent use.
type StatCache struct {
	mu sync.Mutex
	// recordedAt is when the loaded file was saved; zero for a new cache.
	recordedAt int64
	entries    map[string]statEntry
	// dirty is set when an entry changed since load, so a no-change build skips the rewrite.
	dirty bool
}

type statEntry struct {
	Size     int64
	MtimeNs  int64
	CtimeNs  int64
	Ino      uint64
	Dev      uint64
	Mode     uint32
	Digest   string
	HashedAt int64 // when hashing started, ns
}

type statFile struct {
	RecordedAt int64
	Entries    map[string]statEntry
}

// LoadStatCache reads a cache saved by Save. A missing or corrupt file yields an empty cache:
// the cache only ever saves work, so losing it must never fail a build.
func LoadStatCache(file string) (*StatCache, error) {
	c := &StatCache{entries: map[string]statEntry{}}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, nil
	}
	// Layout: magic, gob payload, sha256(payload). The checksum catches torn or bit-flipped files
	// that gob might otherwise decode into plausible but wrong entries.
	if len(data) < len(statCacheMagic)+sha256.Size || string(data[:len(statCacheMagic)]) != statCacheMagic {
		return c, nil
	}
	payload := data[len(statCacheMagic) : len(data)-sha256.Size]
	sum := sha256.Sum256(payload)
	if !bytes.Equal(sum[:], data[len(data)-sha256.Size:]) {
		return c, nil
	}
	var sf statFile
	if err := gob.NewDecoder(bytes.NewReader(payload)).Decode(&sf); err != nil {
		return c, nil
	}
	c.recordedAt = sf.RecordedAt
	if sf.Entries != nil {
		c.entries = sf.Entries
	}
	return c, nil
}

// Save writes the cache atomically (temp file, fsync, rename) so a concurrent reader or a crash
// never sees half a cache.
// Save writes the cache to file through a temp file in scratch (a store's per-process scratch
// dir, removed by a later Open if the process died, so a kill leaves nothing beside file); an
// empty scratch writes beside file.
func (c *StatCache) Save(file, scratch string) error {
	c.mu.Lock()
	if !c.dirty {
		// Keeping the older RecordedAt is safe: it can only make more entries look racy.
		c.mu.Unlock()
		return nil
	}
	sf := statFile{RecordedAt: time.Now().UnixNano(), Entries: c.entries}
	var buf bytes.Buffer
	buf.WriteString(statCacheMagic)
	err := gob.NewEncoder(&buf).Encode(&sf)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode stat cache: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes()[len(statCacheMagic):])
	buf.Write(sum[:])

	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create stat cache dir: %w", err)
	}
	if scratch == "" {
		scratch = dir
	}
	tmp, err := os.CreateTemp(scratch, ".statcache-*")
	if err != nil {
		return fmt.Errorf("create stat cache temp file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("write stat cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync stat cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close stat cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("install stat cache: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // durability of the rename; the cache is advisory, so failure is not fatal
		d.Close()
	}
	return nil
}

// Len reports the number of entries, for tests and diagnostics.
func (c *StatCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func signature(fi fs.FileInfo) (statEntry, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return statEntry{}, false
	}
	return statEntry{
		Size:    fi.Size(),
		MtimeNs: st.Mtim.Sec*1e9 + st.Mtim.Nsec,
		CtimeNs: st.Ctim.Sec*1e9 + st.Ctim.Nsec,
		Ino:     st.Ino,
		Dev:     uint64(st.Dev),
		Mode:    uint32(fi.Mode()),
	}, true
}

func (c *StatCache) lookup(abs string, fi fs.FileInfo) (digest.Digest, bool) {
	if c == nil {
		return "", false
	}
	sig, ok := signature(fi)
	if !ok {
		return "", false
	}
	c.mu.Lock()
	e, ok := c.entries[abs]
	recordedAt := c.recordedAt
	c.mu.Unlock()
	if !ok || e.Size != sig.Size || e.MtimeNs != sig.MtimeNs || e.CtimeNs != sig.CtimeNs ||
		e.Ino != sig.Ino || e.Dev != sig.Dev || e.Mode != sig.Mode {
		return "", false
	}
	// Racy-git: if the file was modified within the timestamp granularity of the moment we hashed
	// it (or saved the cache), a later same-size edit can leave the stat signature unchanged, so
	// such entries are never trusted and get re-hashed.
	margin := racyMargin.Nanoseconds()
	if e.MtimeNs >= e.HashedAt-margin || (recordedAt != 0 && e.MtimeNs >= recordedAt-margin) {
		return "", false
	}
	d, err := digest.Parse(e.Digest)
	if err != nil {
		return "", false
	}
	return d, true
}

func (c *StatCache) store(abs string, fi fs.FileInfo, d digest.Digest, hashedAt time.Time) {
	if c == nil {
		return
	}
	sig, ok := signature(fi)
	if !ok {
		return
	}
	sig.Digest = string(d)
	sig.HashedAt = hashedAt.UnixNano()
	c.mu.Lock()
	if c.entries[abs] != sig {
		c.entries[abs] = sig
		c.dirty = true
	}
	c.mu.Unlock()
}
