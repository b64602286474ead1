package solver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/binfmt"
	"github.com/strata-build/strata/internal/copier"
	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/fileindex"
	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/snapshot"
	"github.com/strata-build/strata/internal/sshagent"
	"github.com/strata-build/strata/internal/store"
	"github.com/strata-build/strata/internal/users"
)

// workspace is a writable overlay of a parent filesystem.
type workspace struct {
	dir, upper, work, merged string
	mounted                  bool
}

// lowers lists the snapshot dirs of f, top layer first. A chain can hold the same layer twice
// (two steps that wrote identical content, e.g. the same COPY in a stage and in its base stage);
// overlayfs refuses a lowerdir that appears twice (ELOOP), so only the topmost occurrence is kept.
// That is the same filesystem: a layer stacked again over X and itself shows exactly its own
// entries above X, which its lower copy could only repeat.
// Missing snapshots are prepared in parallel: on a fresh runner every layer under the first step
// that runs is fetched and unpacked here, and one at a time would add their latencies.
func (s *solver) lowers(f fsState) ([]string, error) {
	paths := make([]string, len(f.layers))
	errs := make([]error, len(f.layers))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, l := range f.layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			paths[i], errs[i] = s.ensureSnapshot(l)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	var lowers []string
	seen := map[string]bool{}
	for i := len(paths) - 1; i >= 0; i-- {
		if seen[paths[i]] {
			continue
		}
		seen[paths[i]] = true
		lowers = append(lowers, paths[i])
	}
	return s.fitStack(lowers)
}

// maxStack is how many lower directories one overlay mount takes here; the kernel refuses more
// than 500 (OVL_MAX_STACK), and the margin leaves room below it.
const maxStack = 400

// flattenBlock is how many layers each flattening step adds: bottoms are flattened in whole
// blocks so that the steps of a tall Dockerfile, each one layer taller, share them.
const flattenBlock = 200

// fitStack keeps the top layers (fewer than maxStack) and replaces the ones below with a single
// directory holding what they show together, so a Dockerfile with any number of layers mounts.
// A stack of overlays would not do: a lower-only overlay hides its whiteouts, so a file deleted
// in one group would show through from the group below.
func (s *solver) fitStack(lowers []string) ([]string, error) {
	n := len(lowers)
	if n <= maxStack {
		return lowers, nil
	}
	f := (n - (maxStack - 1) + flattenBlock - 1) / flattenBlock * flattenBlock
	s.flatMu.Lock()
	flat, err := s.flattenBottom(lowers[n-f:])
	s.flatMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("flatten the bottom %d of %d layers: %w", f, n, err)
	}
	return append(lowers[:n-f:n-f], flat), nil
}

// flattenBottom copies the filesystem that bottom (top first, a whole number of blocks) shows
// into one directory in the store's scratch space: its top block stacked on the flattened rest.
// Each is made once per build; the caller holds flatMu.
func (s *solver) flattenBottom(bottom []string) (string, error) {
	key := strings.Join(bottom, "\x00")
	if p, ok := s.flats[key]; ok {
		return p, nil
	}
	src := bottom
	if len(bottom) > flattenBlock {
		below, err := s.flattenBottom(bottom[flattenBlock:])
		if err != nil {
			return "", err
		}
		src = append(bottom[:flattenBlock:flattenBlock], below)
	}
	dir, err := s.opts.Store.TempDir("flat-")
	if err != nil {
		return "", err
	}
	mnt, fs := filepath.Join(dir, "mnt"), filepath.Join(dir, "fs")
	for _, d := range []string{mnt, fs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := snapshot.Mount(src, "", "", mnt); err != nil {
		return "", err
	}
	// The merged view has no whiteouts left, so Diff reads it as one full layer.
	pr, pw := io.Pipe()
	go func() {
		_, err := snapshot.Diff(mnt, pw)
		pw.CloseWithError(err)
	}()
	err = snapshot.Unpack(pr, fs)
	pr.CloseWithError(io.ErrClosedPipe)
	if uerr := snapshot.Unmount(mnt); err == nil {
		err = uerr
	}
	if err != nil {
		return "", err
	}
	if s.flats == nil {
		s.flats = map[string]string{}
	}
	s.flats[key] = fs
	return fs, nil
}

// newWorkspace mounts parent layers with a fresh upper dir.
func (s *solver) newWorkspace(f fsState) (*workspace, error) {
	lowers, err := s.lowers(f)
	if err != nil {
		return nil, err
	}
	dir, err := s.opts.Store.TempDir("ws-")
	if err != nil {
		return nil, err
	}
	w := &workspace{dir: dir, upper: filepath.Join(dir, "upper"), work: filepath.Join(dir, "work"), merged: filepath.Join(dir, "merged")}
	for _, d := range []string{w.upper, w.work, w.merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if len(lowers) == 0 {
		empty := filepath.Join(dir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return nil, err
		}
		lowers = []string{empty}
	}
	if err := snapshot.Mount(lowers, w.upper, w.work, w.merged); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mount overlay: %w", err)
	}
	w.mounted = true
	return w, nil
}

func (w *workspace) unmount() error {
	if !w.mounted {
		return nil
	}
	w.mounted = false
	return snapshot.Unmount(w.merged)
}

func (w *workspace) remove() {
	w.unmount()
	os.RemoveAll(w.dir)
}

// MountLayers mounts the filesystem layers make, read-only, for a reader outside the solver (the
// local exporter); the returned func unmounts it.
func MountLayers(st *store.Store, layers []store.Layer) (string, func(), error) {
	s := &solver{opts: Options{Store: st}}
	return s.mountRO(fsState{layers: layers})
}

// mountRO mounts a filesystem read-only for reading (COPY --from, bind mounts).
func (s *solver) mountRO(f fsState) (string, func(), error) {
	lowers, err := s.lowers(f)
	if err != nil {
		return "", nil, err
	}
	dir, err := s.opts.Store.TempDir("ro-")
	if err != nil {
		return "", nil, err
	}
	if len(lowers) == 0 {
		return dir, func() { os.RemoveAll(dir) }, nil
	}
	target := filepath.Join(dir, "merged")
	if err := os.Mkdir(target, 0o755); err != nil {
		return "", nil, err
	}
	if err := snapshot.Mount(lowers, "", "", target); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("mount read-only: %w", err)
	}
	return target, func() { snapshot.Unmount(target); os.RemoveAll(dir) }, nil
}

// snapshotCall is one layer being unpacked; stages that need it meanwhile wait for it.
type snapshotCall struct {
	done chan struct{}
	path string
	err  error
}

// ensureSnapshot unpacks a layer blob once; every later build shares the directory. Parallel
// stages that share a base ask for the same layers at the same moment: one fetches and unpacks,
// the others wait, so the bytes are pulled once.
func (s *solver) ensureSnapshot(l store.Layer) (string, error) {
	st := s.opts.Store
	if st.HasSnapshot(l.DiffID) {
		return st.SnapshotPath(l.DiffID), nil
	}
	s.snapMu.Lock()
	if c, ok := s.snapCalls[l.DiffID]; ok {
		s.snapMu.Unlock()
		<-c.done
		return c.path, c.err
	}
	c := &snapshotCall{done: make(chan struct{})}
	if s.snapCalls == nil {
		s.snapCalls = map[digest.Digest]*snapshotCall{}
	}
	s.snapCalls[l.DiffID] = c
	s.snapMu.Unlock()
	c.path, c.err = s.unpackSnapshot(l)
	s.snapMu.Lock()
	delete(s.snapCalls, l.DiffID)
	s.snapMu.Unlock()
	close(c.done)
	return c.path, c.err
}

func (s *solver) unpackSnapshot(l store.Layer) (string, error) {
	st := s.opts.Store
	p := st.SnapshotPath(l.DiffID)
	if st.HasSnapshot(l.DiffID) {
		return p, nil
	}
	tmp, err := st.TempDir("unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "fs")
	unpacked := false
	if !st.Has(l.Digest) && l.Remote != "" && (s.opts.FetchStream != nil || s.opts.Fetch != nil) {
		v := s.startPull(l)
		switch {
		case s.opts.FetchStream != nil:
			unpacked, err = s.fetchAndUnpack(l, dir, v)
		default:
			err = s.opts.Fetch(s.ctx, l)
		}
		if err != nil {
			err = fmt.Errorf("layer %s: %w", l.Digest, err)
			if v != nil {
				v.Fail(err)
			}
			return "", err
		}
		if v != nil {
			v.Done()
		}
	}
	if !unpacked {
		if err := unpackStored(st, l, dir); err != nil {
			return "", err
		}
	}
	if err := st.CommitSnapshot(dir, l.DiffID); err != nil {
		return "", err
	}
	return p, nil
}

// fetchAndUnpack downloads l's blob into the store and unpacks it into dir at the same time, so a
// cold runner's first step waits for about the longer of the two rather than their sum. It
// reports whether dir holds the layer: not when the download had to be retried (the unpack saw a
// partial stream) or the unpack failed on the streamed bytes, in which case the caller unpacks
// the stored, verified blob. The snapshot is committed only after the blob is verified.
func (s *solver) fetchAndUnpack(l store.Layer, dir string, v *progress.Vertex) (bool, error) {
	pr, pw := io.Pipe()
	unpackErr := make(chan error, 1)
	go func() {
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			var r io.ReadCloser
			if r, err = decompress(pr, l.MediaType); err == nil {
				err = snapshot.Unpack(r, dir)
				r.Close()
			}
		}
		// Whatever happened, keep reading: the download writes through us and must not stall.
		io.Copy(io.Discard, pr)
		unpackErr <- err
	}()
	var tee io.Writer = pw
	if v != nil {
		tee = newByteCounter(pw, v, l.Digest.String(), l.Size)
	}
	streamed, err := s.opts.FetchStream(s.ctx, l, tee)
	if streamed {
		pw.Close()
	} else {
		pw.CloseWithError(errors.New("the download was not streamed whole"))
	}
	uerr := <-unpackErr
	if err != nil {
		return false, err
	}
	if !streamed || uerr != nil {
		if rerr := os.RemoveAll(dir); rerr != nil {
			return false, rerr
		}
		return false, nil
	}
	return true, nil
}

// unpackStored unpacks the stored blob of l into dir (created here).
func unpackStored(st *store.Store, l store.Layer, dir string) error {
	rc, err := st.Open(l.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	r, err := decompress(rc, l.MediaType)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	defer r.Close()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := snapshot.Unpack(r, dir); err != nil {
		return fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	return nil
}

// execute runs a step that missed and commits its layer.
func (s *solver) execute(ctx context.Context, st *graph.Stage, step *graph.Step, ss *stageState, in *inputs, v *progress.Vertex, position string) (*store.Record, error) {
	ws, err := s.newWorkspace(ss.fs)
	if err != nil {
		return nil, err
	}
	defer ws.remove()
	var links *copier.Links
	switch step.Kind {
	case graph.KindWorkdir:
		err = mkdirWorkdir(ws.merged, step)
	case graph.KindCopy, graph.KindAdd:
		links = s.linksFor(st, step, in, ws, position)
		defer links.Close()
		err = s.doCopy(ctx, step, ws, in, links)
	case graph.KindRun:
		err = s.doRun(ctx, step, ws, in, v)
	}
	if err != nil {
		return nil, err
	}
	if err := ws.unmount(); err != nil {
		return nil, err
	}
	if err := links.Finish(ws.upper); err != nil {
		return nil, err
	}
	if links != nil && links.Linked > 0 {
		v.Status("%d unchanged files (%s) linked from the previous snapshot", links.Linked, store.FormatSize(links.LinkedBytes))
	}
	rec, err := s.commitLayer(ws.upper, step.Kind != graph.KindWorkdir || step.Workdir != "/", position)
	if err == nil && links != nil && !rec.Empty {
		if idx := links.Index(); idx != nil {
			// Cache for the next run: without it that run copies every file.
			s.opts.Store.PutFileIndex(rec.Layer, idx)
		}
	}
	return rec, err
}

// linksFor prepares a COPY/ADD to hard-link the files that did not change from the snapshot its
// position gave last (copier.Links), and to record the new snapshot's file index. Under
// --no-cache, which must reuse nothing, it only records the index. It returns nil (plain copy, no
// index) for an ADD that may unpack an archive, whose members Links cannot track.
func (s *solver) linksFor(st *graph.Stage, step *graph.Step, in *inputs, ws *workspace, position string) *copier.Links {
	if step.Copy.Unpack {
		if len(in.gits) > 0 {
			return nil
		}
		for _, src := range in.srcs {
			for _, m := range src.sel.Matches {
				if !m.IsDir {
					return nil
				}
			}
		}
	}
	var (
		prevDir string
		idx     fileindex.Index
	)
	if d, err := s.opts.Store.LastLayer(position); err == nil && !s.noCache(st) && s.opts.Store.HasSnapshot(d) {
		if idx, err = s.opts.Store.FileIndex(d); err == nil {
			prevDir = s.opts.Store.SnapshotPath(d)
		}
	}
	l, err := copier.NewLinks(prevDir, idx, filepath.Join(ws.dir, "links"))
	if err != nil {
		return nil
	}
	return l
}

// mkdirWorkdir creates the WORKDIR inside root, resolving symlinks as the container would. Like
// BuildKit, the directories it creates belong to the stage's USER (resolved as --chown is), and
// directories that already exist are left alone.
func mkdirWorkdir(root string, step *graph.Step) error {
	var opts copier.Options
	if step.User != "" {
		uid, gid, err := users.Owner(root, step.User)
		if err != nil {
			return fmt.Errorf("WORKDIR %s: user %s: %w", step.Workdir, step.User, err)
		}
		opts.Chown = &copier.Owner{UID: int(uid), GID: int(gid)}
	}
	return copier.Mkdir(root, step.Workdir, opts)
}

func (s *solver) doCopy(ctx context.Context, step *graph.Step, ws *workspace, in *inputs, links *copier.Links) error {
	c := step.Copy
	opts := copier.Options{Parents: c.Parents, Workdir: step.Dir, Unpack: c.Unpack, Links: links}
	if c.Chown != "" {
		uid, gid, err := users.Owner(ws.merged, c.Chown)
		if err != nil {
			return fmt.Errorf("--chown=%s: %w", c.Chown, err)
		}
		opts.Chown = &copier.Owner{UID: int(uid), GID: int(gid)}
	}
	if c.Chmod != "" {
		m, err := copier.ParseChmod(c.Chmod)
		if err != nil {
			return fmt.Errorf("--chmod=%s: %w", c.Chmod, err)
		}
		opts.Chmod = m
	}
	dest := copyDest(step)
	root := ws.merged
	if c.Link {
		// COPY --link writes its files into an empty filesystem, BuildKit's scratch, and the
		// layer is exactly that: the parents it creates are 0755 root (or --chown) directories
		// that replace the image's metadata for those paths, and a symlink in the image on the
		// destination path is replaced by a directory rather than followed (cases
		// link-existing-dir, link-symlink-dest). The overlay's upper directory starts empty and
		// is the layer, so the copy goes there once the overlay (only needed to resolve --chown
		// names above) is unmounted.
		if err := ws.unmount(); err != nil {
			return err
		}
		root = ws.upper
	}
	for _, src := range in.srcs {
		o := opts
		o.FromContext = src.ctx
		if err := copier.Copy(src.root, src.sel, root, dest, o); err != nil {
			return err
		}
	}
	if c.Parents && len(in.srcs) > 0 && len(in.srcs[0].sel.Matches) == 0 && parentsCopiesRoot(c.Srcs) {
		// BuildKit copies a --parents source as its pivot directory filtered by the pattern,
		// so the destination exists even when the pattern matched nothing
		// (testCopyParentsMissingDirectory, wildcard-nonexistent).
		if err := copier.Mkdir(root, dest, opts); err != nil {
			return err
		}
	}
	for _, f := range c.Files {
		o := opts
		o.FromContext = true
		data := f.Data
		if f.Chomp {
			data = strings.TrimSuffix(data, "\n")
		}
		if err := copier.WriteFile(root, dest, f.Name, strings.NewReader(data), o); err != nil {
			return err
		}
	}
	for _, g := range in.gits {
		if err := s.copyGit(ctx, g, root, dest, opts); err != nil {
			return err
		}
	}
	for _, u := range in.urls {
		fh, err := os.Open(u.path)
		if err != nil {
			return err
		}
		o := opts
		o.FromContext = true
		o.FileMode = 0o600
		err = copier.WriteFile(root, dest, u.name, fh, o)
		fh.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// parentsCopiesRoot reports whether BuildKit would copy at least one --parents source's pivot
// directory: it does unless every pivot has a wildcard (then an empty match copies nothing).
func parentsCopiesRoot(srcs []string) bool {
	for _, src := range srcs {
		pivot, _, ok := strings.Cut(src, "/./")
		if !ok || !strings.ContainsAny(pivot, "*?[") {
			return true
		}
	}
	return false
}

func (s *solver) doRun(ctx context.Context, step *graph.Step, ws *workspace, in *inputs, v *progress.Vertex) error {
	s.runtimeOK.Do(func() { s.runtimeErr = executor.Check(s.opts.Runtime) })
	if s.runtimeErr != nil {
		return s.runtimeErr
	}
	if step.Stage != nil && step.Stage.Platform.Architecture != "" {
		p := step.Stage.Platform
		// A foreign platform's binaries run only through a QEMU binfmt_misc handler; without
		// one the container would fail with "exec format error", which names nothing to fix.
		if err := binfmt.Check(p); err != nil {
			return err
		}
	}
	r := step.Run
	network := r.Network
	if network == "" || network == "default" {
		network = s.opts.Network
	}
	spec := executor.Spec{
		ID:       "strata-" + randomID(),
		Rootfs:   ws.merged,
		Args:     r.Args,
		Env:      append(append([]string(nil), r.Env...), r.ProxyEnv...),
		User:     r.User,
		Cwd:      r.Cwd,
		Network:  network,
		Insecure: r.Security == "insecure",
		Hostname: r.Sandbox.Hostname,
		ShmSize:  r.Sandbox.ShmSize,
	}
	for _, h := range r.Sandbox.ExtraHosts {
		spec.ExtraHosts = append(spec.ExtraHosts, executor.Host{Name: h.Name, IP: h.IP})
	}
	for _, u := range r.Sandbox.Ulimits {
		spec.Ulimits = append(spec.Ulimits, executor.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	if spec.Cwd == "" {
		spec.Cwd = "/"
	}
	if len(r.Files) > 0 {
		dir := filepath.Join(ws.dir, "pipes")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		for _, f := range r.Files {
			data := f.Data
			if f.Chomp {
				data = strings.TrimSuffix(data, "\n")
			}
			// Written from the string itself: a []byte conversion would copy a big script.
			if err := writeString(filepath.Join(dir, path.Base(f.Name)), data, 0o755); err != nil {
				return err
			}
		}
		spec.Mounts = append(spec.Mounts, executor.Mount{Type: "bind", Source: dir, Target: "/dev/pipes", ReadOnly: true})
	}
	for i, m := range r.Mounts {
		target := m.Target
		if !path.IsAbs(target) {
			target = path.Join(spec.Cwd, target)
		}
		switch m.Type {
		case "bind":
			src := in.mounts[m.Target]
			// Mount a copy of exactly the selected files: what the key covers is all the step sees,
			// and changes made through a rw bind are discarded with it.
			dir := filepath.Join(ws.dir, "bind"+strconv.Itoa(i))
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			o := copier.Options{FromContext: src.ctx}
			dest := "/"
			if len(src.sel.Matches) == 1 && !src.sel.Matches[0].IsDir {
				dest = "/" + path.Base(src.sel.Matches[0].Path)
			}
			if err := copier.Copy(src.root, src.sel, dir, dest, o); err != nil {
				return fmt.Errorf("mount %s: %w", m.Target, err)
			}
			srcPath := dir
			if dest != "/" {
				srcPath = filepath.Join(dir, dest)
			}
			spec.Mounts = append(spec.Mounts, executor.Mount{Type: "bind", Source: srcPath, Target: target, ReadOnly: m.ReadOnly})
		case "cache":
			id := m.ID
			if id == "" {
				id = target
			}
			seed, seeded := in.mounts[m.Target]
			if seeded {
				// BuildKit keeps one cache per id and from= source (its key is id:ref): a
				// changed seed starts a new cache rather than reusing one grown from another.
				id += ":" + string(seed.digest())
			}
			var dir string
			var err error
			if s.opts.CacheMount != nil {
				dir, err = s.opts.CacheMount(ctx, id)
			} else {
				dir, err = s.opts.Store.CacheMountDir(id)
			}
			if err != nil {
				return err
			}
			unlock, err := lockCacheDir(ctx, dir, m.Sharing)
			if err != nil {
				return err
			}
			defer unlock()
			data := filepath.Join(dir, "data")
			mountSrc := data
			if seeded && len(seed.sel.Matches) == 1 && !seed.sel.Matches[0].IsDir {
				mountSrc = filepath.Join(data, path.Base(seed.sel.Matches[0].Path))
			}
			if _, err := os.Stat(data); errors.Is(err, fs.ErrNotExist) && seeded {
				tmp := data + ".new-" + randomID()
				if err := seedCacheDir(tmp, seed); err != nil {
					os.RemoveAll(tmp)
					return fmt.Errorf("mount %s: seed cache: %w", m.Target, err)
				}
				if err := os.Rename(tmp, data); err != nil {
					os.RemoveAll(tmp) // a concurrent step seeded it first
				}
			} else if errors.Is(err, fs.ErrNotExist) {
				tmp := data + ".new-" + randomID()
				mode := uint32(0o755)
				if m.Mode != nil {
					mode = *m.Mode
				}
				if err := os.Mkdir(tmp, fs.FileMode(mode)); err != nil {
					return err
				}
				os.Chmod(tmp, fs.FileMode(mode))
				uid, gid := 0, 0
				if m.UID != nil {
					uid = *m.UID
				}
				if m.GID != nil {
					gid = *m.GID
				}
				os.Lchown(tmp, uid, gid)
				if err := os.Rename(tmp, data); err != nil {
					os.Remove(tmp)
				}
			}
			spec.Mounts = append(spec.Mounts, executor.Mount{Type: "bind", Source: mountSrc, Target: target, ReadOnly: m.ReadOnly})
		case "tmpfs":
			opts := []string{"nosuid", "nodev"}
			if m.Size > 0 {
				opts = append(opts, "size="+strconv.FormatInt(m.Size, 10))
			}
			spec.Mounts = append(spec.Mounts, executor.Mount{Type: "tmpfs", Source: "tmpfs", Target: target, Options: opts})
		case "secret":
			val, ok := s.opts.Secrets[m.ID]
			if !ok {
				if m.Required {
					return fmt.Errorf("secret %q is required but was not given: pass --secret id=%s,src=FILE (or env=VAR)", m.ID, m.ID)
				}
				// Not required and not given: BuildKit skips the mount but still sets the
				// variable, empty (ExecOp.loadSecretEnv).
				if m.Env != "" {
					spec.Env = append(spec.Env, m.Env+"=")
				}
				continue
			}
			if m.Env != "" {
				spec.Env = append(spec.Env, m.Env+"="+string(val))
				if m.Target == "" {
					continue
				}
			}
			if m.Target == "" {
				target = "/run/secrets/" + m.ID
			}
			p, cleanup, err := secretFile(val, m)
			if err != nil {
				return err
			}
			defer cleanup()
			spec.Mounts = append(spec.Mounts, executor.Mount{Type: "bind", Source: p, Target: target, ReadOnly: true})
		case "ssh":
			if !s.opts.SSH.Has(m.ID) {
				if m.Required {
					return fmt.Errorf("no SSH key %q forwarded: pass --ssh %s (the agent at $SSH_AUTH_SOCK) or --ssh %s=SOCKET|KEYFILE[,KEYFILE…]%s", m.ID, m.ID, m.ID, forwardedSSH(s.opts.SSH))
				}
				continue // not required and not given: BuildKit skips the mount (SSH_AUTH_SOCK stays set)
			}
			o := sshagent.SocketOpts{Mode: 0o600}
			if m.UID != nil {
				o.UID = *m.UID
			}
			if m.GID != nil {
				o.GID = *m.GID
			}
			if m.Mode != nil {
				o.Mode = fs.FileMode(*m.Mode)
			}
			sock, stop, err := s.opts.SSH.Serve(m.ID, memDir, o)
			if err != nil {
				return fmt.Errorf("mount %s: %w", target, err)
			}
			defer stop()
			spec.Mounts = append(spec.Mounts, executor.Mount{Type: "bind", Source: sock, Target: target})
		}
	}
	out := v.Writer()
	tail := &tailBuffer{max: 4096}
	spec.Stdout = io.MultiWriter(out, tail)
	spec.Stderr = io.MultiWriter(out, tail)
	err := executor.Run(ctx, s.opts.Runtime, spec)
	progress.Flush(out)
	if err != nil {
		var ee *executor.ExitError
		if errors.As(err, &ee) {
			msg := fmt.Sprintf("process %q did not complete successfully: exit code: %d", strings.Join(r.Args, " "), ee.Code)
			if t := strings.TrimSpace(tail.String()); t != "" {
				msg += "\n" + lastLines(t, 10)
			}
			return errors.New(msg)
		}
		return err
	}
	return nil
}

// seedCacheDir creates dir as a copy of a cache mount's from= source: a directory's contents
// with the directory's own mode and owner (BuildKit mounts that directory itself), or a file
// inside it, which doRun then mounts.
func seedCacheDir(dir string, seed source) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	m := seed.sel.Matches[0]
	dest := "/"
	if !m.IsDir {
		dest = "/" + path.Base(m.Path)
	}
	if err := copier.Copy(seed.root, seed.sel, dir, dest, copier.Options{FromContext: seed.ctx}); err != nil {
		return err
	}
	if !m.IsDir {
		return nil
	}
	files := seed.sel.Under(m.Target)
	if len(files) == 0 || files[0].Path != m.Target {
		return nil // the root of the source: not part of the selection, left 0755 root
	}
	f := files[0]
	if err := os.Chmod(dir, f.Mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return os.Lchown(dir, f.UID, f.GID)
}

// forwardedSSH names the ids the build does forward, for a required id that is missing.
func forwardedSSH(a *sshagent.Agents) string {
	ids := a.IDs()
	if len(ids) == 0 {
		return ""
	}
	return "; forwarded: " + strings.Join(ids, ", ")
}

// memDir is where secret files and ssh agent sockets go: memory-backed, never the store, and
// inside strata build's namespace a tmpfs of its own that even a SIGKILL takes away.
const memDir = "/dev/shm"

// secretFile writes a secret to memory-backed storage, never the store, and returns its path.
func secretFile(val []byte, m *graph.Mount) (string, func(), error) {
	dir, err := os.MkdirTemp(memDir, "strata-secret-")
	if err != nil {
		return "", nil, fmt.Errorf("secret %s: %w", m.ID, err)
	}
	mode := fs.FileMode(0o400)
	if m.Mode != nil {
		mode = fs.FileMode(*m.Mode)
	}
	p := filepath.Join(dir, "secret")
	if err := os.WriteFile(p, val, mode); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("secret %s: %w", m.ID, err)
	}
	os.Chmod(p, mode)
	uid, gid := 0, 0
	if m.UID != nil {
		uid = *m.UID
	}
	if m.GID != nil {
		gid = *m.GID
	}
	os.Lchown(p, uid, gid)
	return p, func() { os.RemoveAll(dir) }, nil
}

// lockCacheDir implements sharing=locked (one user at a time); shared needs no lock, and private
// is served as locked, which is correct, only less parallel.
func lockCacheDir(ctx context.Context, dir, sharing string) (func(), error) {
	if sharing == "" || sharing == "shared" {
		return func() {}, nil
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return func() { f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeString is os.WriteFile for a string, without converting it to a []byte (a copy).
func writeString(name, data string, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
