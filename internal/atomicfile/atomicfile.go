// Package atomicfile writes small files so that a reader sees the old content or the new, never
// a part: write a temp file, fsync it, rename it over the target. The store, the build history
// and the local cache export all write their records this way.
package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
)

// Options says where the temp file goes and what the result looks like.
type Options struct {
	// Scratch is the directory of the temp file; "" puts it beside the target. A store passes its
	// per-process scratch dir (same filesystem, so the rename is atomic; removed by a later Open
	// if the process died), so a kill mid-write leaves no temp file among the records.
	Scratch string
	// Perm is the file's mode; 0 keeps os.CreateTemp's 0600.
	Perm fs.FileMode
	// SyncDir fsyncs the target's directory after the rename, so the new name itself survives a
	// power loss (a history record that was reported written).
	SyncDir bool
	// NoSync skips the file's fsync: for caches whose files carry their own check (a checksum, a
	// digest that must parse), where a file a crash leaves torn costs a recomputation, never a
	// wrong answer, and an fsync per write would cost more than the cache saves.
	NoSync bool
}

// Write replaces path with data.
func Write(path string, data []byte, o Options) error {
	dir := o.Scratch
	if dir == "" {
		dir = filepath.Dir(path)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if o.Perm != 0 {
		if err := f.Chmod(o.Perm); err != nil {
			f.Close()
			return err
		}
	}
	if !o.NoSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if o.SyncDir {
		d, err := os.Open(filepath.Dir(path))
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Sync()
	}
	return nil
}
