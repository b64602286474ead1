package remotecache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/klauspost/pgzip"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/store"
)

// maxMountChain bounds how many deltas a mount accumulates before an export writes it whole again,
// so an import never applies a long tail of small blobs.
const maxMountChain = 8

// MountSet serves the cache mounts of one build. A mount that an imported cache carries is a
// private copy of the imported version, unpacked when the first RUN that uses it starts (a build
// that never runs such a step fetches nothing); other mounts are the store's shared directories,
// as without a cache. After a successful build, export writes each mount the build used as the
// imported chain plus a delta of what changed, and passes on imported mounts it did not touch.
type MountSet struct {
	st *store.Store
	ix *Index
	f  *Fetcher

	mu   sync.Mutex
	used map[string]*usedMount
}

type usedMount struct {
	dir  string // holds data/ (and the sharing lock)
	base *importedMount
	// baseState is the imported version as unpacked, to compute the delta against.
	baseState map[string]fileState
	ready     chan struct{}
	err       error
}

// NewMountSet serves cache mounts from the store, seeded from ix when it carries them.
func NewMountSet(st *store.Store, ix *Index, f *Fetcher) *MountSet {
	return &MountSet{st: st, ix: ix, f: f, used: map[string]*usedMount{}}
}

// Dir returns the directory (holding data/) behind a cache mount id.
func (ms *MountSet) Dir(ctx context.Context, id string) (string, error) {
	ms.mu.Lock()
	u, ok := ms.used[id]
	if !ok {
		u = &usedMount{ready: make(chan struct{})}
		ms.used[id] = u
	}
	ms.mu.Unlock()
	if ok {
		select {
		case <-u.ready:
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
		return u.dir, u.err
	}
	defer close(u.ready)
	var im *importedMount
	if ms.ix != nil {
		if m, ok := ms.ix.mounts[id]; ok {
			im = &m
		}
	}
	if im == nil {
		u.dir, u.err = ms.st.CacheMountDir(id)
		return u.dir, u.err
	}
	u.dir, u.baseState, u.err = ms.seed(ctx, im)
	u.base = im
	if u.err != nil {
		u.err = fmt.Errorf("cache mount %s from the imported cache: %w", id, u.err)
	}
	return u.dir, u.err
}

// seed unpacks an imported mount chain into a private directory.
func (ms *MountSet) seed(ctx context.Context, im *importedMount) (string, map[string]fileState, error) {
	dir, err := ms.st.TempDir("mount-")
	if err != nil {
		return "", nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		return "", nil, err
	}
	for _, b := range im.Blobs {
		if err := ms.f.fetch(ctx, im.remote, b); err != nil {
			return "", nil, err
		}
		if err := ms.applyBlob(b, data); err != nil {
			return "", nil, fmt.Errorf("blob %s: %w", b.Digest, err)
		}
	}
	state, _, err := scanDir(data)
	if err != nil {
		return "", nil, err
	}
	return dir, state, nil
}

func (ms *MountSet) applyBlob(b ocispec.Descriptor, data string) error {
	rc, err := ms.st.Open(b.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	zr, err := pgzip.NewReader(rc)
	if err != nil {
		return err
	}
	defer zr.Close()
	return applyTar(zr, data)
}

// Release is a no-op: private copies live in the store's per-process scratch dir, which goes
// away with the process.
func (ms *MountSet) Release() {}

// export returns the mounts to put in the cache and the blobs they reference. Mounts over max
// bytes are left out (warned about in the returned notes).
func (ms *MountSet) export(ctx context.Context, max int64) ([]Mount, []mountBlob, []string, error) {
	var mounts []Mount
	var blobs []mountBlob
	var notes []string
	done := map[string]bool{}
	ms.mu.Lock()
	ids := make([]string, 0, len(ms.used))
	for id := range ms.used {
		ids = append(ids, id)
	}
	ms.mu.Unlock()
	sort.Strings(ids)
	for _, id := range ids {
		u := ms.used[id]
		<-u.ready
		if u.err != nil {
			continue
		}
		data := filepath.Join(u.dir, "data")
		cur, size, err := scanDir(data)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("cache mount %s: %w", id, err)
		}
		if size > max {
			notes = append(notes, fmt.Sprintf("cache mount %s holds %d bytes, over mounts-max-size=%d: not exported", id, size, max))
			continue
		}
		m := Mount{ID: id, Size: size}
		var base map[string]fileState
		if u.base != nil && len(u.base.Blobs) < maxMountChain {
			base = u.baseState
			m.Blobs = append(m.Blobs, u.base.Blobs...)
			for _, b := range u.base.Blobs {
				blobs = append(blobs, mountBlob{Descriptor: b, Remote: u.base.remote})
			}
		}
		d, changed, err := ms.writeBlob(data, cur, base)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("cache mount %s: %w", id, err)
		}
		if changed > 0 || base == nil {
			m.Blobs = append(m.Blobs, d)
			blobs = append(blobs, mountBlob{Descriptor: d})
		}
		mounts = append(mounts, m)
		done[id] = true
	}
	// Imported mounts this build did not use pass on as they are (references only): a fully cached
	// build must not drop them from the cache it rewrites.
	if ms.ix != nil {
		for id, im := range ms.ix.mounts {
			if done[id] {
				continue
			}
			mounts = append(mounts, im.Mount)
			for _, b := range im.Blobs {
				blobs = append(blobs, mountBlob{Descriptor: b, Remote: im.remote})
			}
		}
	}
	return mounts, blobs, notes, nil
}

// writeBlob stores the tar (full, or the delta against base) of a mount directory as a blob.
func (ms *MountSet) writeBlob(dir string, cur, base map[string]fileState) (ocispec.Descriptor, int, error) {
	bw, err := ms.st.NewBlobWriter()
	if err != nil {
		return ocispec.Descriptor{}, 0, err
	}
	defer bw.Abort()
	zw := pgzip.NewWriter(bw)
	changed, err := writeTar(zw, dir, cur, base)
	if err != nil {
		zw.Close()
		return ocispec.Descriptor{}, 0, err
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, 0, err
	}
	if base != nil && changed == 0 {
		return ocispec.Descriptor{}, 0, nil
	}
	d, n, err := bw.Commit()
	if err != nil {
		return ocispec.Descriptor{}, 0, err
	}
	return ocispec.Descriptor{MediaType: MountMediaType, Digest: d, Size: n}, changed, nil
}
