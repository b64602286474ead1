package contenthash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/atomicfile"
)

// racyMargin widens the racy window: Linux stamps files from a coarse clock that lags
// time.Now() by up to a tick, and some filesystems keep whole seconds, so an edit made just after
// we hashed can carry an mtime slightly before the hash started and look unchanged.
const racyMargin = 2 * time.Second

// The cache file is one sorted table, read in one go and searched in place, so loading it costs
// the same whether it holds ten entries or a million (the v1 gob map was decoded whole, which
// was most of a no-change rebuild's CPU after the lstats):
//
//	header  magic (24 bytes) | recordedAt i64 | count u64 | poolSize u64 | 0 u32 | crc32c(header[0:52]) u32
//	records count × recordSize, sorted by path in pathLess order (component by component, the
//	        order of a selection, so a build matches them in one merge pass), each ending in the crc32c of its
//	        fixed fields followed by its path bytes
//	pool    the paths, concatenated
//
// Little endian. A file whose header, size or magic is off is thrown away whole; a record whose
// checksum fails is a miss (the file is re-hashed) and marks the cache for rewriting, so a
// damaged or truncated file is rebuilt by the next build that hashes anything and never serves a
// digest it did not record.
const (
	statCacheMagic = "strata-statcache-v2\n\x00\x00\x00\x00"
	headerSize     = 56
	recordSize     = 104
)

// Record field offsets.
const (
	rPathOff  = 0  // u32, into the pool
	rPathLen  = 4  // u32
	rSize     = 8  // i64
	rMtime    = 16 // i64, ns
	rCtime    = 24 // i64, ns
	rIno      = 32 // u64
	rDev      = 40 // u64
	rHashedAt = 48 // i64, ns: when hashing started
	rMode     = 56 // u32, fs.FileMode
	rUID      = 60 // u32
	rGID      = 64 // u32
	rSum      = 68 // [32]byte, sha256 of the content
	rCRC      = 100
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// StatCache maps a file's stat signature to its content digest, like git's index, so a rebuild
// with nothing changed reads metadata only. It is safe for concurrent use.
type StatCache struct {
	// recordedAt is when the loaded file was saved; zero for a new cache.
	recordedAt int64
	// table is the loaded file's record array and pool, read-only once loaded, so lookups
	// search it without a lock.
	records []byte
	pool    []byte
	count   int

	mu sync.Mutex
	// added holds what this process hashed; it overrides the table.
	added map[string]statEntry
	// dirty is set when an entry changed since load, or a damaged record was found, so a
	// no-change build skips the rewrite and a damaged file is rebuilt.
	dirty atomic.Bool
}

// statSig is what a file's lstat says, compared field by field: any change in size, mtime, ctime
// (which a chmod, chown, link or rename of the inode also moves), inode, device, mode or owner
// means the content must be read again.
type statSig struct {
	Size    int64
	MtimeNs int64
	CtimeNs int64
	Ino     uint64
	Dev     uint64
	Mode    uint32
	UID     uint32
	GID     uint32
}

type statEntry struct {
	statSig
	Sum      [32]byte
	HashedAt int64 // when hashing started, ns
}

// LoadStatCache reads a cache saved by Save. A missing or damaged file yields an empty cache:
// the cache only ever saves work, so losing it must never fail a build.
func LoadStatCache(file string) (*StatCache, error) {
	c := &StatCache{added: map[string]statEntry{}}
	data, mapped, err := mapFile(file)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.dirty.Store(true) // unreadable: try to replace it
		}
		return c, nil
	}
	if mapped {
		// Unmapped when the cache is collected; every read of the mapping goes through c.
		runtime.AddCleanup(c, func(b []byte) { unix.Munmap(b) }, data)
	}
	if !c.attach(data) {
		c.dirty.Store(true)
	}
	return c, nil
}

// mapFile maps file read-only, pages populated up front (a no-change rebuild reads every record,
// and one populate is cheaper than a fault per page); the mapping is the page cache itself, so a
// 200,000-entry cache costs neither a 27 MB copy nor heap the GC must scan. Save replaces the
// file by rename, so the mapped inode never changes under us (only someone truncating it in
// place could make a read fault). Small files are read instead.
func mapFile(file string) (data []byte, mapped bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	size := fi.Size()
	if size >= 64<<10 && size < 1<<40 {
		if data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE); err == nil {
			return data, true, nil
		}
	}
	data, err = os.ReadFile(file)
	return data, false, err
}

// attach checks data's header and size and, if they hold, serves lookups from it.
func (c *StatCache) attach(data []byte) bool {
	if len(data) < headerSize || string(data[:len(statCacheMagic)]) != statCacheMagic {
		return false
	}
	if crc32.Checksum(data[:52], castagnoli) != binary.LittleEndian.Uint32(data[52:]) {
		return false
	}
	count := binary.LittleEndian.Uint64(data[32:])
	poolSize := binary.LittleEndian.Uint64(data[40:])
	body := uint64(len(data) - headerSize)
	if count > body/recordSize || poolSize != body-count*recordSize {
		return false // truncated or padded
	}
	c.recordedAt = int64(binary.LittleEndian.Uint64(data[24:]))
	c.count = int(count)
	c.records = data[headerSize : headerSize+count*recordSize]
	c.pool = data[headerSize+count*recordSize:]
	return true
}

// Len reports the number of entries, for tests and diagnostics.
func (c *StatCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.added)
	for i := range c.count {
		if p, ok := c.path(i); ok {
			if _, over := c.added[string(p)]; !over {
				n++
			}
		}
	}
	return n
}

func (c *StatCache) record(i int) []byte { return c.records[i*recordSize : (i+1)*recordSize] }

// path is record i's path, or false when its offsets leave the pool (a damaged record).
func (c *StatCache) path(i int) ([]byte, bool) {
	r := c.record(i)
	off, n := uint64(binary.LittleEndian.Uint32(r[rPathOff:])), uint64(binary.LittleEndian.Uint32(r[rPathLen:]))
	if off+n > uint64(len(c.pool)) {
		return nil, false
	}
	return c.pool[off : off+n], true
}

// entry decodes record i if its checksum holds.
func (c *StatCache) entry(i int) (statEntry, []byte, bool) {
	r := c.record(i)
	p, ok := c.path(i)
	if !ok {
		return statEntry{}, nil, false
	}
	crc := crc32.Update(crc32.Checksum(r[:rCRC], castagnoli), castagnoli, p)
	if crc != binary.LittleEndian.Uint32(r[rCRC:]) {
		return statEntry{}, nil, false
	}
	le := binary.LittleEndian
	e := statEntry{
		statSig: statSig{
			Size:    int64(le.Uint64(r[rSize:])),
			MtimeNs: int64(le.Uint64(r[rMtime:])),
			CtimeNs: int64(le.Uint64(r[rCtime:])),
			Ino:     le.Uint64(r[rIno:]),
			Dev:     le.Uint64(r[rDev:]),
			Mode:    le.Uint32(r[rMode:]),
			UID:     le.Uint32(r[rUID:]),
			GID:     le.Uint32(r[rGID:]),
		},
		HashedAt: int64(le.Uint64(r[rHashedAt:])),
	}
	copy(e.Sum[:], r[rSum:rCRC])
	return e, p, true
}

// statCursor matches a selection's files against the table in one forward pass: the files come
// in pathLess order, as the records do, so each lookup starts where the last one stopped and
// the table is read sequentially, once.
type statCursor struct {
	c    *StatCache
	root string // ends in "/"
	i    int
	key  []byte // root + rel, reused
}

func (c *StatCache) cursor(root string) *statCursor {
	if c == nil {
		return nil
	}
	if !strings.HasSuffix(root, "/") {
		root += "/" // keys are filepath.Join(root, rel), which has one slash even for root "/"
	}
	return &statCursor{c: c, root: root}
}

// lookup returns the content sum recorded for root/rel if st still matches the signature it
// was recorded with and the record is not racy. Calls must come in pathLess order of rel.
func (k *statCursor) lookup(rel string, st *fileStat) ([32]byte, bool) {
	if k == nil {
		return [32]byte{}, false
	}
	c := k.c
	k.key = append(append(k.key[:0], k.root...), rel...)
	key := k.key
	var e statEntry
	found := false
	c.mu.Lock()
	if len(c.added) > 0 {
		e, found = c.added[string(key)]
	}
	c.mu.Unlock()
	if !found {
		for ; k.i < c.count; k.i++ {
			p, ok := c.path(k.i)
			if !ok {
				c.dirty.Store(true) // damaged: skipped, and the file is rewritten
				continue
			}
			if !pathLess(unsafe.String(unsafe.SliceData(p), len(p)), unsafe.String(unsafe.SliceData(key), len(key))) {
				break
			}
		}
		if k.i >= c.count {
			return [32]byte{}, false
		}
		var p []byte
		var ok bool
		if e, p, ok = c.entry(k.i); !ok {
			c.dirty.Store(true)
			return [32]byte{}, false
		}
		if string(p) != string(key) {
			return [32]byte{}, false
		}
	}
	return c.trusted(e, st)
}

// trusted returns e's sum if st still matches e's signature and e is not racy.
func (c *StatCache) trusted(e statEntry, st *fileStat) ([32]byte, bool) {
	if e.statSig != st.sig() {
		return [32]byte{}, false
	}
	// Racy-git: if the file was modified within the timestamp granularity of the moment we hashed
	// it (or saved the cache), a later same-size edit can leave the stat signature unchanged, so
	// such entries are never trusted and get re-hashed.
	margin := racyMargin.Nanoseconds()
	if e.MtimeNs >= e.HashedAt-margin || (c.recordedAt != 0 && e.MtimeNs >= c.recordedAt-margin) {
		return [32]byte{}, false
	}
	return e.Sum, true
}

// store records sum for abs as hashed from a file whose lstat was st, reading from hashedAt on.
func (c *StatCache) store(abs string, st *fileStat, sum [32]byte, hashedAt time.Time) {
	if c == nil {
		return
	}
	e := statEntry{statSig: st.sig(), Sum: sum, HashedAt: hashedAt.UnixNano()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.added[abs]; ok && old == e {
		return
	}
	c.added[abs] = e
	c.dirty.Store(true)
}

// Save writes the cache to file through a temp file in scratch (a store's per-process scratch
// dir, removed by a later Open if the process died, so a kill leaves nothing beside file); an
// empty scratch writes beside file. Nothing is written when nothing changed since the load.
func (c *StatCache) Save(file, scratch string) error {
	if !c.dirty.Load() {
		// Keeping the older recordedAt is safe: it can only make more entries look racy.
		return nil
	}
	c.mu.Lock()
	data, err := c.encode(time.Now().UnixNano())
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("create stat cache dir: %w", err)
	}
	// The cache is advisory, so its directory is not fsynced: a lost rename costs a re-hash.
	if err := atomicfile.Write(file, data, atomicfile.Options{Scratch: scratch}); err != nil {
		return fmt.Errorf("write stat cache: %w", err)
	}
	c.dirty.Store(false)
	return nil
}

// encode merges the loaded table (minus damaged records and those added overrides) with added
// into a new file image.
func (c *StatCache) encode(recordedAt int64) ([]byte, error) {
	type item struct {
		path string
		e    statEntry
	}
	items := make([]item, 0, c.count+len(c.added))
	for i := range c.count {
		e, p, ok := c.entry(i)
		if !ok {
			continue
		}
		if _, over := c.added[string(p)]; over {
			continue
		}
		items = append(items, item{string(p), e})
	}
	for p, e := range c.added {
		items = append(items, item{p, e})
	}
	slices.SortFunc(items, func(a, b item) int { return pathCompare(a.path, b.path) })
	items = slices.CompactFunc(items, func(a, b item) bool { return a.path == b.path })

	poolSize := 0
	for _, it := range items {
		poolSize += len(it.path)
	}
	if poolSize > 1<<32-1 {
		return nil, fmt.Errorf("stat cache: %d bytes of paths is more than the format holds", poolSize)
	}
	buf := make([]byte, headerSize+len(items)*recordSize+poolSize)
	le := binary.LittleEndian
	copy(buf, statCacheMagic)
	le.PutUint64(buf[24:], uint64(recordedAt))
	le.PutUint64(buf[32:], uint64(len(items)))
	le.PutUint64(buf[40:], uint64(poolSize))
	le.PutUint32(buf[52:], crc32.Checksum(buf[:52], castagnoli))
	pool := buf[headerSize+len(items)*recordSize:]
	off := 0
	for i, it := range items {
		r := buf[headerSize+i*recordSize : headerSize+(i+1)*recordSize]
		le.PutUint32(r[rPathOff:], uint32(off))
		le.PutUint32(r[rPathLen:], uint32(len(it.path)))
		le.PutUint64(r[rSize:], uint64(it.e.Size))
		le.PutUint64(r[rMtime:], uint64(it.e.MtimeNs))
		le.PutUint64(r[rCtime:], uint64(it.e.CtimeNs))
		le.PutUint64(r[rIno:], it.e.Ino)
		le.PutUint64(r[rDev:], it.e.Dev)
		le.PutUint64(r[rHashedAt:], uint64(it.e.HashedAt))
		le.PutUint32(r[rMode:], it.e.Mode)
		le.PutUint32(r[rUID:], it.e.UID)
		le.PutUint32(r[rGID:], it.e.GID)
		copy(r[rSum:rCRC], it.e.Sum[:])
		copy(pool[off:], it.path)
		le.PutUint32(r[rCRC:], crc32.Update(crc32.Checksum(r[:rCRC], castagnoli), castagnoli, pool[off:off+len(it.path)]))
		off += len(it.path)
	}
	return buf, nil
}
