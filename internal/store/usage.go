package store

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// Disk usage (`strata du`, and the figure GC compares with its limit).
//
// Sizes are apparent sizes of regular files, each inode counted once however many store paths
// name it (as `du -sb` counts): a COPY that runs again hard-links its unchanged files from the
// snapshot it gave last, so summing per-snapshot sizes would count a shared file in every
// snapshot holding it and make GC evict too early. Per-process scratch under tmp/ is not counted.

// snapshotSizesFile caches what each snapshot holds (snapshots never change once committed), so
// the usage check after every build does not walk every unpacked layer. snapshot-sizes.json,
// the format before inodes were counted once, is removed on the first save.
const (
	snapshotSizesFile    = "snapshot-sizes-v2.json"
	oldSnapshotSizesFile = "snapshot-sizes.json"
)

// UsageEntry is one line of `strata du`.
type UsageEntry struct {
	Kind  string
	Count int
	Size  int64
}

var usageKinds = []struct{ kind, dir string }{
	{"blobs", "blobs/sha256"},
	{"layers", "layers"},
	{"snapshots", "snapshots"},
	{"cache records", "cache"},
	{"base images", "resolved"},
	{"tags", "tags"},
	{"cache mounts", "cachemounts"},
	{"step history", "records"},
	{"stat caches", "statcache"},
	{"selection memos", "selections"},
	{"snapshot file indexes", "snapfiles"},
	{"layer member indexes", "members"},
	{"output memos", "outputs"},
	// Build records (internal/history) reference no content; GC never removes them (history
	// prune bounds them) but they take space all the same. The directory appears with the
	// first record.
	{"build history", "history"},
}

// inode names a file independently of its paths.
type inode struct{ dev, ino uint64 }

// inodeSet remembers the inodes with more than one link already counted.
type inodeSet map[inode]bool

// count reports whether a file with this stat is to be counted: always for a single link,
// the first time only for an inode with several.
func (seen inodeSet) count(st *unix.Stat_t) bool {
	if st.Nlink <= 1 {
		return true
	}
	k := inode{uint64(st.Dev), st.Ino}
	if seen[k] {
		return false
	}
	seen[k] = true
	return true
}

// Usage sums the store by kind. The last entry, "other", holds the top-level files.
func (s *Store) Usage() ([]UsageEntry, error) {
	sizes := s.snapshotSizes()
	seen := inodeSet{}
	var out []UsageEntry
	for _, k := range usageKinds {
		ents, err := os.ReadDir(filepath.Join(s.root, k.dir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		e := UsageEntry{Kind: k.kind, Count: len(ents)}
		for _, ent := range ents {
			p := filepath.Join(s.root, k.dir, ent.Name())
			if k.dir == "snapshots" && ent.IsDir() {
				sz := sizes.get(p, ent.Name())
				e.Size += sz.Unique
				for _, sh := range sz.Shared {
					if k := (inode{sz.Dev, sh[0]}); !seen[k] {
						seen[k] = true
						e.Size += int64(sh[1])
					}
				}
				continue
			}
			e.Size += treeSize(p, seen)
		}
		out = append(out, e)
	}
	sizes.save() // before measuring the top-level files, the size cache among them
	other := UsageEntry{Kind: "other"}
	ents, _ := os.ReadDir(s.root)
	for _, ent := range ents {
		if ent.Type().IsRegular() {
			other.Count++
			other.Size += treeSize(filepath.Join(s.root, ent.Name()), seen)
		}
	}
	out = append(out, other)
	return out, nil
}

// TotalUsage is the sum of Usage, the number GC compares with its limit.
func (s *Store) TotalUsage() (int64, error) {
	u, err := s.Usage()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range u {
		n += e.Size
	}
	return n, nil
}

// treeSize is the apparent size of the regular files at or below p, leaving out inodes seen
// already (and adding the ones it counts to seen).
func treeSize(p string, seen inodeSet) int64 {
	var n int64
	filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			var st unix.Stat_t
			if unix.Lstat(path, &st) == nil && seen.count(&st) {
				n += st.Size
			}
		}
		return nil
	})
	return n
}

// snapSize is what one snapshot holds: the bytes of its files with a single link, and each
// inode it shares (hard links, within the snapshot or with other snapshots) with its size.
type snapSize struct {
	Unique int64     `json:"u"`
	Dev    uint64    `json:"d,omitempty"`
	Shared inodeList `json:"s,omitempty"`

	// Known only right after a walk: the path of each shared inode and how many of its links
	// the snapshot holds, to find the snapshot it is shared with (see reconcile).
	fresh bool
	paths map[uint64]sharedPath
}

type sharedPath struct {
	rel   string
	links uint64 // links within this snapshot
	nlink uint64 // links in all
}

// measureSnapshot walks a snapshot directory.
func measureSnapshot(dir string) *snapSize {
	sz := &snapSize{fresh: true, paths: map[uint64]sharedPath{}}
	var dirSt unix.Stat_t
	if unix.Lstat(dir, &dirSt) == nil {
		sz.Dev = uint64(dirSt.Dev)
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil {
			return nil
		}
		if st.Nlink <= 1 || uint64(st.Dev) != sz.Dev {
			sz.Unique += st.Size
			return nil
		}
		sp, ok := sz.paths[st.Ino]
		if !ok {
			rel, _ := filepath.Rel(dir, path)
			sp = sharedPath{rel: rel, nlink: uint64(st.Nlink)}
			sz.Shared = append(sz.Shared, [2]uint64{st.Ino, uint64(st.Size)})
		}
		sp.links++
		sz.paths[st.Ino] = sp
		return nil
	})
	return sz
}

// snapshotSizes is the cache of snapSize by snapshot name.
type snapshotSizes struct {
	path    string
	root    string
	m       map[string]*snapSize
	seen    map[string]bool
	changed bool
}

func (s *Store) loadSnapshotSizes() *snapshotSizes {
	c := &snapshotSizes{path: filepath.Join(s.root, snapshotSizesFile), root: s.root, m: map[string]*snapSize{}, seen: map[string]bool{}}
	if readJSON(c.path, &c.m) != nil {
		c.m = map[string]*snapSize{} // damaged: measure again
	}
	for k, v := range c.m {
		if v == nil {
			delete(c.m, k)
		}
	}
	return c
}

// snapshotSizes loads the cache and brings it up to date with every snapshot in the store.
func (s *Store) snapshotSizes() *snapshotSizes {
	c := s.loadSnapshotSizes()
	ents, _ := os.ReadDir(filepath.Join(s.root, "snapshots"))
	for _, e := range ents {
		if e.IsDir() {
			c.get(filepath.Join(s.root, "snapshots", e.Name()), e.Name())
		}
	}
	return c
}

// get returns a snapshot's size, measuring it when the cache lacks it.
func (c *snapshotSizes) get(p, name string) *snapSize {
	c.seen[name] = true
	if sz, ok := c.m[name]; ok {
		return sz
	}
	sz := measureSnapshot(p)
	c.m[name] = sz
	c.changed = true
	c.reconcile(name, sz)
	return sz
}

// reconcile fixes the entries of older snapshots that counted a file as their own (it had one
// link when they were measured) which the new snapshot now shares: a COPY links an unchanged
// file from the snapshot it gave last, at the same path. An inode some other entry lists as
// shared already is known; one whose links are all within the new snapshot (a layer's own hard
// links) needs nothing; for the rest the same path is looked up in the other cached snapshots,
// the one that held it last first, as files come in path order from one earlier snapshot.
func (c *snapshotSizes) reconcile(name string, sz *snapSize) {
	if len(sz.Shared) == 0 {
		return
	}
	known := map[uint64]bool{}
	for other, o := range c.m {
		if other != name && o.Dev == sz.Dev {
			for _, sh := range o.Shared {
				known[sh[0]] = true
			}
		}
	}
	var lastHolder string
	for _, sh := range sz.Shared {
		ino := sh[0]
		sp := sz.paths[ino]
		if known[ino] || sp.links >= sp.nlink {
			continue
		}
		holder := func(other string) bool {
			o := c.m[other]
			if other == name || o == nil || o.fresh || o.Dev != sz.Dev {
				return false
			}
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(c.root, "snapshots", other, sp.rel), &st) != nil || st.Ino != ino || uint64(st.Dev) != sz.Dev {
				return false
			}
			o.Unique -= st.Size
			o.Shared = append(o.Shared, [2]uint64{ino, uint64(st.Size)})
			c.changed = true
			known[ino] = true
			lastHolder = other
			return true
		}
		if lastHolder != "" && holder(lastHolder) {
			continue
		}
		for other := range c.m {
			if holder(other) {
				break
			}
		}
	}
}

// save writes the cache back, dropping snapshots that no longer exist; only Usage, which sees
// every snapshot, calls it.
func (c *snapshotSizes) save() {
	for k := range c.m {
		if !c.seen[k] {
			delete(c.m, k)
			c.changed = true
		}
	}
	if c.changed {
		writeJSON("", c.path, c.m)
	}
	os.Remove(filepath.Join(filepath.Dir(c.path), oldSnapshotSizesFile))
}

// drop forgets a snapshot's entry (one removed and unpacked again holds new inodes).
func (s *Store) dropSnapshotSize(name string) {
	c := s.loadSnapshotSizes()
	if _, ok := c.m[name]; ok {
		delete(c.m, name)
		writeJSON("", c.path, c.m)
	}
}

// inodeList is a snapshot's shared inodes, each as (inode number, size). A snapshot a COPY
// re-ran into shares nearly all its files, and the size cache is read after every build, so the
// list is kept compact: sorted by inode, as varints of the inode's difference from the previous
// one and of the size, base64 in the JSON (a few bytes an inode instead of ~25).
type inodeList [][2]uint64

func (l inodeList) MarshalJSON() ([]byte, error) {
	sorted := slices.Clone(l)
	slices.SortFunc(sorted, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	var buf []byte
	var prev uint64
	for _, e := range sorted {
		buf = binary.AppendUvarint(buf, e[0]-prev)
		buf = binary.AppendUvarint(buf, e[1])
		prev = e[0]
	}
	return json.Marshal(buf)
}

func (l *inodeList) UnmarshalJSON(data []byte) error {
	var buf []byte
	if err := json.Unmarshal(data, &buf); err != nil {
		return err
	}
	var out inodeList
	var prev uint64
	for len(buf) > 0 {
		d, n := binary.Uvarint(buf)
		if n <= 0 {
			return errors.New("bad inode list")
		}
		size, m := binary.Uvarint(buf[n:])
		if m <= 0 {
			return errors.New("bad inode list")
		}
		buf = buf[n+m:]
		prev += d
		out = append(out, [2]uint64{prev, size})
	}
	*l = out
	return nil
}
