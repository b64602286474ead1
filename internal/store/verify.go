package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/fileindex"
)

// Problem is one inconsistency Verify found.
type Problem struct {
	Path     string // the file or directory at fault, relative to the store root
	Msg      string // what is wrong with it, one line
	Repaired bool   // Verify was asked to repair and removed it
	// RepairErr says why a repair was attempted and failed.
	RepairErr error
}

func (p Problem) String() string {
	s := p.Path + ": " + p.Msg
	switch {
	case p.Repaired:
		s += " (removed)"
	case p.RepairErr != nil:
		s += " (repair failed: " + p.RepairErr.Error() + ")"
	}
	return s
}

// VerifyResult counts what Verify looked at and lists what it found wrong.
type VerifyResult struct {
	Blobs, Records, Snapshots int
	Problems                  []Problem
}

// Unrepaired is how many problems are still there.
func (r *VerifyResult) Unrepaired() int {
	n := 0
	for _, p := range r.Problems {
		if !p.Repaired {
			n++
		}
	}
	return n
}

// Summary is the one line `strata store verify` ends with.
func (r *VerifyResult) Summary() string {
	s := fmt.Sprintf("store verify: %d blobs, %d records, %d snapshots: ", r.Blobs, r.Records, r.Snapshots)
	n := len(r.Problems)
	switch {
	case n == 0:
		return s + "ok"
	case n == 1:
		s += "1 problem"
	default:
		s += fmt.Sprintf("%d problems", n)
	}
	if fixed := n - r.Unrepaired(); fixed > 0 {
		s += fmt.Sprintf(", %d repaired", fixed)
	}
	return s
}

// Verify checks the whole store: every blob against its digest; every layer record against the
// blob it names (present, or fetchable from its Remote) and its size; every cache record against
// its layer; every snapshot against its layer record; every tag and remembered resolution
// against the image it names; index files that no longer parse; and leftovers of killed
// processes: scratch directories, temp files of interrupted writes, and mounts under the store.
//
// With repair it removes what is broken, dependents after what they depend on (a blob with the
// wrong content, then the layer records naming a blob that is now gone, then the cache records
// naming such a layer), so the store ends consistent; what is fine is never touched. Every
// removal costs at most a rebuild or a pull: records and snapshots are cache, and a layer or a
// tag whose content is lost could not be exported anyway. Verify needs the store opened exclusively, so no build
// is writing while it looks (an unfinished write would otherwise look like a leftover).
func (s *Store) Verify(repair bool) (*VerifyResult, error) {
	if !s.exclusive {
		return nil, errors.New("store verify: the store must be opened exclusively")
	}
	v := &verifier{s: s, repair: repair, res: &VerifyResult{}, blobs: map[string]bool{}, layers: map[string]Layer{}}
	steps := []func() error{v.checkMounts, v.checkScratch, v.checkTempFiles, v.checkBlobs, v.checkLayers, v.checkSnapshots, v.checkFileIndexes, v.checkRecords, v.checkImages, v.checkIndexFiles, v.checkCacheFiles}
	for _, step := range steps {
		if err := step(); err != nil {
			return v.res, fmt.Errorf("store verify: %w", err)
		}
	}
	return v.res, nil
}

type verifier struct {
	s      *Store
	repair bool
	res    *VerifyResult
	blobs  map[string]bool  // hex of every blob that is present and correct
	layers map[string]Layer // diffID hex → record, for every layer record that is usable
}

// problem records one finding and, when repairing, removes path (relative to the root).
func (v *verifier) problem(rel, format string, args ...any) {
	p := Problem{Path: rel, Msg: fmt.Sprintf(format, args...)}
	if v.repair {
		if err := v.remove(rel); err != nil {
			p.RepairErr = err
		} else {
			p.Repaired = true
		}
	}
	v.res.Problems = append(v.res.Problems, p)
}

func (v *verifier) remove(rel string) error {
	p := filepath.Join(v.s.root, rel)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return os.Remove(p)
	}
	// Never delete through a mount, and never leave a half-deleted directory under a real name.
	detachMounts(p)
	if err := v.s.removeTree(p); err != nil {
		return err
	}
	if dir, name := filepath.Split(rel); filepath.Clean(dir) == "snapshots" {
		v.s.dropSnapshotSize(name) // unpacked again, it holds new inodes
	}
	return nil
}

func (v *verifier) readDir(rel string) ([]fs.DirEntry, error) {
	ents, err := os.ReadDir(filepath.Join(v.s.root, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return ents, err
}

// checkMounts finds anything mounted under the store: no build runs (we hold the store exclusively),
// and builds mount inside their own namespace, so a mount here is a killed build's leftover.
func (v *verifier) checkMounts() error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil // no /proc: nothing to check against
	}
	defer f.Close()
	var found []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, v.s.root+"/") {
			found = append(found, mp)
		}
	}
	sort.Slice(found, func(i, j int) bool { return len(found[i]) > len(found[j]) })
	for _, mp := range found {
		rel, _ := filepath.Rel(v.s.root, mp)
		p := Problem{Path: rel, Msg: "stray mount"}
		if v.repair {
			detachMounts(mp)
			p.Repaired = true
		}
		v.res.Problems = append(v.res.Problems, p)
	}
	return nil
}

// checkScratch finds scratch dirs of processes that are gone (Open removes them, so one still here
// could not be removed then).
func (v *verifier) checkScratch() error {
	ents, err := v.readDir("tmp")
	if err != nil {
		return err
	}
	for _, e := range ents {
		rel := filepath.Join("tmp", e.Name())
		if filepath.Join(v.s.root, rel) == v.s.tmpDir {
			continue
		}
		v.problem(rel, "stray scratch left by a process that is gone")
	}
	return nil
}

// indexDirs hold small files written through atomicfile.Write (".tmp-…" while being written).
var indexDirs = []string{"layers", "cache", "tags", "resolved", "records", "statcache", "selections", "history", "members", "outputs", "snapfiles"}

func (v *verifier) checkTempFiles() error {
	for _, dir := range indexDirs {
		ents, err := v.readDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				v.problem(filepath.Join(dir, e.Name()), "temp file of an interrupted write")
			}
		}
	}
	return nil
}

func (v *verifier) checkBlobs() error {
	dir := filepath.Join("blobs", "sha256")
	ents, err := v.readDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		rel := filepath.Join(dir, e.Name())
		v.res.Blobs++
		if !validKey(e.Name()) || e.Name() != strings.ToLower(e.Name()) {
			v.problem(rel, "not a blob name")
			continue
		}
		if !e.Type().IsRegular() {
			v.problem(rel, "not a regular file")
			continue
		}
		got, err := fileDigest(filepath.Join(v.s.root, rel))
		if err != nil {
			return err
		}
		if got != e.Name() {
			v.problem(rel, "content has digest sha256:%s", got)
			continue
		}
		v.blobs[e.Name()] = true
	}
	return nil
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (v *verifier) hasBlob(d digest.Digest) bool {
	return d.Validate() == nil && d.Algorithm() == digest.SHA256 && v.blobs[d.Encoded()]
}

// readJSONStrict reads a JSON file, unlike readJSON telling a damaged file from a missing one.
func readJSONStrict(p string, x any) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, x); err != nil {
		return fmt.Errorf("damaged: %w", err)
	}
	return nil
}

func (v *verifier) checkLayers() error {
	ents, err := v.readDir("layers")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		rel := filepath.Join("layers", e.Name())
		hexID, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !validKey(hexID) {
			v.problem(rel, "not a layer record name")
			continue
		}
		var l Layer
		if err := readJSONStrict(filepath.Join(v.s.root, rel), &l); err != nil {
			v.problem(rel, "%v", err)
			continue
		}
		switch {
		case l.DiffID.Validate() != nil || l.DiffID.Encoded() != hexID:
			v.problem(rel, "names layer %q, not the one its name says", l.DiffID)
			continue
		case l.Digest.Validate() != nil:
			v.problem(rel, "bad blob digest %q", l.Digest)
			continue
		case !v.hasBlob(l.Digest) && l.Remote == "":
			v.problem(rel, "blob %s is missing and no registry is known for it", l.Digest)
			continue
		}
		if v.hasBlob(l.Digest) {
			if fi, err := os.Stat(v.s.BlobPath(l.Digest)); err == nil && l.Size > 0 && fi.Size() != l.Size {
				v.problem(rel, "size %d, but blob %s has %d bytes", l.Size, l.Digest, fi.Size())
				continue
			}
		}
		v.layers[hexID] = l
	}
	return nil
}

// checkSnapshots checks that each unpacked layer belongs to a usable layer record. A snapshot removed
// here is unpacked again from its blob when a build needs it.
func (v *verifier) checkSnapshots() error {
	ents, err := v.readDir("snapshots")
	if err != nil {
		return err
	}
	for _, e := range ents {
		rel := filepath.Join("snapshots", e.Name())
		v.res.Snapshots++
		switch {
		case !validKey(e.Name()):
			v.problem(rel, "not a snapshot name")
		case !e.IsDir():
			v.problem(rel, "not a directory")
		default:
			if _, ok := v.layers[e.Name()]; !ok {
				v.problem(rel, "no usable layer record for it")
			}
		}
	}
	return nil
}

// checkFileIndexes checks each snapshot file index (fileindex.go): it must belong to a snapshot,
// decode, and every file it lists must be in that snapshot, a regular file with that content. A
// COPY hard-links indexed files into its new snapshot without reading them, so a snapshot file
// changed on disk would spread; repair removes the snapshot (it is unpacked again from its blob
// when needed) with its index.
func (v *verifier) checkFileIndexes() error {
	ents, err := v.readDir("snapfiles")
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			continue // checkTempFiles reports it
		}
		rel := filepath.Join("snapfiles", name)
		if !validKey(name) {
			v.problem(rel, "not a file index name")
			continue
		}
		snap := filepath.Join("snapshots", name)
		if fi, err := os.Stat(filepath.Join(v.s.root, snap)); err != nil || !fi.IsDir() {
			v.problem(rel, "its snapshot is gone")
			continue
		}
		data, err := os.ReadFile(filepath.Join(v.s.root, rel))
		if err != nil {
			return err
		}
		idx, err := fileindex.Decode(data)
		if err != nil {
			v.problem(rel, "%v", err)
			continue
		}
		paths := make([]string, 0, len(idx))
		for p := range idx {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		dfd, err := unix.Open(filepath.Join(v.s.root, snap), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		for _, p := range paths {
			if msg := indexedFileProblem(dfd, p, idx[p], buf); msg != "" {
				v.problem(snap, "%s: %s", p, msg)
				v.problem(rel, "lists a file its snapshot does not hold")
				break
			}
		}
		unix.Close(dfd)
	}
	return nil
}

// indexedFileProblem says what is wrong with the file at p in the snapshot directory dfd, which
// the index says holds content sum ("" when nothing is). The path is opened without following
// any symlink.
func indexedFileProblem(dfd int, p string, sum [32]byte, buf []byte) string {
	fd, err := unix.Openat2(dfd, p, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Sprintf("cannot open: %v", err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	if !fi.Mode().IsRegular() {
		return "not a regular file"
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, onlyReader{f}, buf); err != nil {
		return err.Error()
	}
	if got := h.Sum(nil); !bytes.Equal(got, sum[:]) {
		return fmt.Sprintf("content has digest sha256:%x, its file index says sha256:%x", got, sum)
	}
	return ""
}

type onlyReader struct{ io.Reader }

func (v *verifier) checkRecords() error {
	ents, err := v.readDir("cache")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		rel := filepath.Join("cache", e.Name())
		v.res.Records++
		key, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !validKey(key) {
			v.problem(rel, "not a cache record name")
			continue
		}
		var r Record
		if err := readJSONStrict(filepath.Join(v.s.root, rel), &r); err != nil {
			v.problem(rel, "%v", err)
			continue
		}
		switch {
		case r.Key != key:
			v.problem(rel, "holds key %q", r.Key)
		case r.Empty:
		case r.Layer.Validate() != nil:
			v.problem(rel, "step %q: bad layer %q", r.Step, r.Layer)
		default:
			if _, ok := v.layers[r.Layer.Encoded()]; !ok {
				v.problem(rel, "step %q: layer %s is gone", r.Step, r.Layer)
			}
		}
	}
	return nil
}

// checkImages checks that every tag and remembered resolution names an image whose manifest and
// config are here and whose layers are here or fetchable.
func (v *verifier) checkImages() error {
	for _, dir := range []string{"tags", "resolved"} {
		ents, err := v.readDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				continue
			}
			rel := filepath.Join(dir, e.Name())
			name, err := url.PathUnescape(e.Name())
			if err != nil {
				v.problem(rel, "not an escaped image name")
				continue
			}
			data, err := os.ReadFile(filepath.Join(v.s.root, rel))
			if err != nil {
				return err
			}
			d, err := digest.Parse(strings.TrimSpace(string(data)))
			if err != nil {
				v.problem(rel, "%s: damaged: %v", name, err)
				continue
			}
			if msg := v.imageProblem(d); msg != "" {
				v.problem(rel, "%s: %s", name, msg)
			}
		}
	}
	return nil
}

func (v *verifier) imageProblem(d digest.Digest) string {
	if !v.hasBlob(d) {
		return fmt.Sprintf("manifest %s is missing", d)
	}
	// A multi-platform build is tagged as an index: each platform's image must be whole.
	var idx ocispec.Index
	if err := readJSONStrict(v.s.BlobPath(d), &idx); err == nil && idx.MediaType == ocispec.MediaTypeImageIndex {
		for _, child := range idx.Manifests {
			if child.Digest == d || child.Digest.Validate() != nil {
				return fmt.Sprintf("index %s: bad entry %q", d, child.Digest)
			}
			if msg := v.imageProblem(child.Digest); msg != "" {
				return fmt.Sprintf("index %s: %s", d, msg)
			}
		}
		return ""
	}
	var m ocispec.Manifest
	if err := readJSONStrict(v.s.BlobPath(d), &m); err != nil {
		return fmt.Sprintf("manifest %s: %v", d, err)
	}
	if !v.hasBlob(m.Config.Digest) {
		return fmt.Sprintf("config %s is missing", m.Config.Digest)
	}
	var cfg ocispec.Image
	if err := readJSONStrict(v.s.BlobPath(m.Config.Digest), &cfg); err != nil {
		return fmt.Sprintf("config %s: %v", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Sprintf("manifest %s has %d layers, its config %d", d, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	for i, desc := range m.Layers {
		if v.hasBlob(desc.Digest) {
			continue
		}
		// A lazy layer: its record says where to fetch it.
		diffID := cfg.RootFS.DiffIDs[i]
		if l, ok := v.layers[diffID.Encoded()]; ok && diffID.Validate() == nil && l.Remote != "" && l.Digest == desc.Digest {
			continue
		}
		return fmt.Sprintf("layer %s is missing and no registry is known for it", desc.Digest)
	}
	return ""
}

// checkIndexFiles finds the remaining index files that no longer parse (readers treat them as
// missing, so they only cost a miss, but they are damage all the same).
func (v *verifier) checkIndexFiles() error {
	for _, dir := range []string{"records", "selections"} {
		ents, err := v.readDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-") || !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			rel := filepath.Join(dir, e.Name())
			var x any
			if err := readJSONStrict(filepath.Join(v.s.root, rel), &x); err != nil {
				v.problem(rel, "%v", err)
			}
		}
	}
	return nil
}

// checkCacheFiles finds cache files that describe something no longer in the store: a member
// index or a position's last blob whose blob is gone, a position's last layer whose layer record
// is gone, an output memo whose output is gone. Readers already ignore them; they only take space.
func (v *verifier) checkCacheFiles() error {
	ents, err := v.readDir("members")
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			continue
		}
		rel := filepath.Join("members", name)
		hex := name
		if strings.HasPrefix(name, lastBlobPrefix) {
			d, err := readBlobPointer(filepath.Join(v.s.root, rel))
			if err != nil {
				v.problem(rel, "not a blob pointer")
				continue
			}
			hex = d.Encoded()
		}
		if !v.blobs[hex] {
			v.problem(rel, "its blob is gone")
		}
	}
	if ents, err = v.readDir("records"); err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".layer") || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		rel := filepath.Join("records", e.Name())
		d, err := readBlobPointer(filepath.Join(v.s.root, rel))
		if err != nil {
			v.problem(rel, "not a layer pointer")
		} else if _, ok := v.layers[d.Encoded()]; !ok {
			v.problem(rel, "no usable layer record for %s", d)
		}
	}
	if ents, err = v.readDir("outputs"); err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		rel := filepath.Join("outputs", e.Name())
		if msg := orphanOutputMemo(filepath.Join(v.s.root, rel)); msg != "" {
			v.problem(rel, "%s", msg)
		}
	}
	return nil
}
