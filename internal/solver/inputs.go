package solver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/contenthash"
	"github.com/strata-build/strata/internal/copier"
	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/store"
)

// keyVersion changes whenever the meaning of a key changes, so old records can never be served.
const keyVersion = 2

// copyVersion is keyVersion for the COPY/ADD steps that write onto the parent filesystem (all
// but --link): it changes when what such a step writes depends differently on what that
// filesystem holds, which the key (naming the parent, not what is at the destination) cannot
// tell, so their old records are never served while RUN and every other step keep their keys.
// 1 (no field): before; 2: a file destination that is a symlink in the parent is written through
// (inside the root), and directories below the top destination that exist take the source's
// owner and mode, as BuildKit does (cases copy-dest-symlink-file, copy-existing-dir-owner).
const copyVersion = 2

// maxSummaryFiles bounds per-file digests kept for miss reasons; past it only the total is kept.
const maxSummaryFiles = 2000

// source is a filesystem a step reads (the context, a stage, an image) with the selection made on it.
type source struct {
	root string
	sel  *contenthash.Selection
	ctx  bool // a context directory (owner defaults to 0:0 when copied)
	// lazy is set (and root, sel are not) while a stage or image source is known only from its
	// selection memo: enough for the key and the summary, nothing mounted. materialize makes
	// the real selection before the step executes.
	lazy *lazySource
}

// lazySource is a stage or image selection answered by a memo.
type lazySource struct {
	fs             fsState
	srcs, excludes []string
	what           string
	memo           store.SelectionMemo
}

// keyDigest is what the step's key reads of a COPY source.
func (src source) keyDigest(step *graph.Step) string {
	if src.lazy != nil {
		return src.lazy.memo.KeyDigest
	}
	return keyDigest(step, src.sel)
}

// digest is the selection's checksum (what a bind mount's key reads).
func (src source) digest() digest.Digest {
	if src.lazy != nil {
		return src.lazy.memo.Digest
	}
	return src.sel.Digest
}

// inputs is everything a step reads besides its parent filesystem, resolved before the key.
type inputs struct {
	def      map[string]any
	srcs     []source          // COPY/ADD sources, one per Source (one today)
	mounts   map[string]source // RUN --mount bind sources by target
	urls     []urlFile         // ADD https://…
	gits     []gitInput        // ADD of a git repository, resolved to a commit
	cleanups []func()
}

type urlFile struct {
	url, name, path string
	digest          digest.Digest
}

func (in *inputs) release() {
	for i := len(in.cleanups) - 1; i >= 0; i-- {
		in.cleanups[i]()
	}
}

// key names the step's result. compression is part of it because the record points at a
// compressed blob: a gzip layer must not answer a zstd build.
func (in *inputs) key(step *graph.Step, parent digest.Digest, compression string) string {
	doc := map[string]any{"v": keyVersion, "kind": string(step.Kind), "def": in.def, "parent": parent, "compression": compression}
	// The platform a step is built for: a RUN of the same text on the same files gives other
	// bytes under arm64 than under amd64. linux/amd64, the only platform earlier versions built,
	// is left out, so their keys (and the caches holding them) stay valid.
	if p := stepPlatform(step); p != "" {
		doc["platform"] = p
	}
	var sel []string
	for _, s := range in.srcs {
		sel = append(sel, s.keyDigest(step))
	}
	doc["srcs"] = sel
	for _, s := range in.srcs {
		if s.ctx && s.sel != nil && slices.ContainsFunc(s.sel.Files, func(f contenthash.File) bool { return f.Mode&fs.ModeSocket != 0 }) {
			// A socket in a context is now copied as an empty file (it was skipped), so a
			// layer stored before must not answer; other steps keep their keys.
			doc["contextSockets"] = "emptyFiles"
		}
	}
	m := map[string]string{}
	for t, s := range in.mounts {
		m[t] = string(s.digest())
	}
	doc["mounts"] = m
	var u []string
	for _, f := range in.urls {
		u = append(u, f.url+" "+string(f.digest))
	}
	doc["urls"] = u
	if len(in.gits) > 0 {
		// Only when there is one, so the keys of every other step stay as they were.
		var g []string
		for _, x := range in.gits {
			g = append(g, x.keyString())
		}
		doc["git"] = g
	}
	data, _ := json.Marshal(doc)
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// stepPlatform is the platform a step's key names: "" for linux/amd64 (or a stage without one).
func stepPlatform(step *graph.Step) string {
	if step.Stage == nil || step.Stage.Platform.Architecture == "" {
		return ""
	}
	p := platform.Normalize(step.Stage.Platform)
	if platform.Equal(p, ocispec.Platform{OS: "linux", Architecture: "amd64"}) {
		return ""
	}
	return platform.Format(p)
}

// summary is what a later miss is explained against.
func (in *inputs) summary(step *graph.Step, parent digest.Digest) map[string]string {
	m := map[string]string{"instruction": step.Text, "parent": string(parent)}
	if p := stepPlatform(step); p != "" {
		m["platform"] = p
	}
	if step.Stage != nil && step.Stage.Base.Digest != "" {
		m["base"] = step.Stage.Base.Image + "@" + step.Stage.Base.Digest
	}
	defJSON, _ := json.Marshal(in.def)
	m["def"] = digest.FromBytes(defJSON).String()
	if step.Run != nil && !step.Run.Sandbox.IsZero() {
		sb, _ := json.Marshal(in.def["sandbox"])
		m["sandbox"] = digest.FromBytes(sb).String()
	}
	if step.Run != nil {
		for _, kv := range step.Run.Env {
			k, v, _ := strings.Cut(kv, "=")
			m["env:"+k] = shortHash(v)
		}
	}
	n := 0
	for _, s := range in.srcs {
		if m := s.lazy; m != nil {
			n += m.memo.Files
			if m.memo.Summary == nil && m.memo.Files > 0 {
				n += maxSummaryFiles + 1 // a memo that travelled without its per-file summary
			}
		} else {
			n += len(s.sel.Files)
		}
	}
	for _, s := range in.srcs {
		m["sel"] += string(s.digest())
		if n <= maxSummaryFiles {
			// Context paths read as the user wrote them (src/main.js); paths in a stage or an
			// image are absolute there (/out/app.js).
			prefix := "file:/"
			if s.ctx {
				prefix = "file:"
			}
			if s.lazy != nil {
				for p, sig := range s.lazy.memo.Summary {
					m[prefix+p] = sig
				}
				continue
			}
			for _, f := range s.sel.Files {
				m[prefix+f.Path] = fileSig(f)
			}
		}
	}
	for t, s := range in.mounts {
		m["mount:"+t] = string(s.digest())
	}
	for _, f := range in.urls {
		m["url:"+f.url] = string(f.digest)
	}
	for _, g := range in.gits {
		m["git:"+g.name()] = g.commit
	}
	return m
}

func fileSig(f contenthash.File) string {
	return fmt.Sprintf("%o %s %s %d:%d", uint32(f.Mode), f.Digest(), f.Link, f.UID, f.GID)
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// inputs resolves what step reads. Stage and image sources stay mounted until release.
func (s *solver) inputs(ctx context.Context, st *graph.Stage, step *graph.Step, ss *stageState) (*inputs, error) {
	in := &inputs{mounts: map[string]source{}}
	ok := false
	defer func() {
		if !ok {
			in.release()
		}
	}()
	switch step.Kind {
	case graph.KindWorkdir:
		in.def = map[string]any{"dir": step.Workdir}
		if step.User != "" {
			in.def["user"] = step.User // the directories WORKDIR creates belong to USER
		}
	case graph.KindCopy, graph.KindAdd:
		c := step.Copy
		in.def = map[string]any{
			"srcs": c.Srcs, "dest": copyDest(step), "chown": c.Chown, "chmod": c.Chmod,
			"link": c.Link, "parents": c.Parents, "excludes": c.Excludes, "unpack": c.Unpack,
			"files": keyFiles(c.Files), "keepGit": c.KeepGit, "checksum": c.Checksum,
			"from": fromIdentity(c.From),
		}
		for k, v := range copySemantics(step) {
			in.def[k] = v
		}
		if len(c.Srcs) > 0 {
			src, err := s.selectFrom(ctx, st, step, c.From, c.Srcs, c.Excludes, in)
			if err != nil {
				return nil, err
			}
			in.srcs = append(in.srcs, src)
		}
		for _, u := range c.URLs {
			f, err := s.fetchURL(ctx, u, c.Checksum)
			if err != nil {
				return nil, err
			}
			in.cleanups = append(in.cleanups, func() { os.Remove(f.path) })
			in.urls = append(in.urls, f)
		}
		for _, g := range c.Git {
			r, err := resolveGit(ctx, g)
			if err != nil {
				return nil, err
			}
			in.gits = append(in.gits, r)
		}
	case graph.KindRun:
		r := step.Run
		network := r.Network
		if network == "" || network == "default" {
			network = s.opts.Network
		}
		var mounts []map[string]any
		for _, m := range r.Mounts {
			md := map[string]any{
				"type": m.Type, "target": m.Target, "source": m.Source, "id": m.ID, "sharing": m.Sharing,
				"ro": m.ReadOnly, "mode": m.Mode, "uid": m.UID, "gid": m.GID, "size": m.Size,
				"required": m.Required, "env": m.Env,
			}
			if m.From != nil {
				md["from"] = fromIdentity(*m.From)
			}
			mounts = append(mounts, md)
			switch m.Type {
			case "bind":
				from := graph.Source{}
				if m.From != nil {
					from = *m.From
				}
				srcPath := m.Source
				if srcPath == "" {
					srcPath = "."
				}
				src, err := s.selectFrom(ctx, st, step, from, []string{srcPath}, nil, in)
				if err != nil {
					return nil, fmt.Errorf("mount %s: %w", m.Target, err)
				}
				in.mounts[m.Target] = src
			case "ssh":
				// Only the id and options are keyed; whether the id is given is checked when the
				// step runs, so a cached step needs no agent (as in BuildKit).
			case "secret":
				// Like ssh: a missing required secret fails the step when it runs, so a cached
				// step needs no secret (as in BuildKit).
			case "cache":
				if m.From == nil || !seedsCache(m) {
					break
				}
				// A new cache with from= starts as a copy of that directory, so what the
				// step reads includes it: the seed's checksum is in the key (and names the
				// cache, see doRun), as the stage is an input of BuildKit's exec op.
				src, err := s.selectFrom(ctx, st, step, *m.From, []string{cacheSeedPath(m)}, nil, in)
				if err != nil {
					return nil, fmt.Errorf("mount %s: %w", m.Target, err)
				}
				in.mounts[m.Target] = src
			case "tmpfs":
			default:
				return nil, fmt.Errorf("unknown mount type %q", m.Type)
			}
		}
		if r.Security == "insecure" && !s.opts.AllowInsecure {
			return nil, fmt.Errorf("RUN --security=insecure needs --allow security.insecure")
		}
		in.def = runDef(r, network, mounts)
	default:
		return nil, fmt.Errorf("internal error: step kind %q has no inputs", step.Kind)
	}
	ok = true
	return in, nil
}

// runDef is the definition a RUN step's key covers.
func runDef(r *graph.RunOp, network string, mounts []map[string]any) map[string]any {
	def := map[string]any{
		"args": r.Args, "env": r.Env, "user": r.User, "cwd": r.Cwd, "network": network,
		"security": r.Security, "mounts": mounts, "files": keyFiles(r.Files),
	}
	// Only when set, so the keys of steps in the default sandbox stay as they were.
	if !r.Sandbox.IsZero() {
		def["sandbox"] = map[string]any{
			"hostname": r.Sandbox.Hostname, "hosts": r.Sandbox.ExtraHosts,
			"ulimits": r.Sandbox.Ulimits, "shm": r.Sandbox.ShmSize,
		}
	}
	return def
}

// bigInline is the heredoc size from which the key names a body by its digest instead of
// carrying it: the key document is JSON-encoded (and encoded again for the miss summary), and a
// 200 MB body would cost several times its size in escaped copies.
const bigInline = 1 << 20

// hashedInline is an InlineFile whose body the key holds as a digest. The extra field keeps it
// distinct from any small file, whose body is in the key as written.
type hashedInline struct {
	graph.InlineFile
	DataSHA256 string
}

// keyFiles is files as the key document holds them: unchanged (so existing keys stay valid)
// unless a body is big, which is then hashed in place.
func keyFiles(files []graph.InlineFile) any {
	big := false
	for _, f := range files {
		big = big || len(f.Data) >= bigInline
	}
	if !big {
		return files
	}
	out := make([]any, len(files))
	for i, f := range files {
		if len(f.Data) < bigInline {
			out[i] = f
			continue
		}
		sum := sha256String(f.Data)
		f.Data = ""
		out[i] = hashedInline{InlineFile: f, DataSHA256: hex.EncodeToString(sum)}
	}
	return out
}

// sha256String hashes s through a small buffer: sha256's hash has no WriteString, so
// io.WriteString would convert the whole body to a []byte, a copy of a 200 MB heredoc.
func sha256String(s string) []byte {
	h := sha256.New()
	var buf [32 << 10]byte
	for len(s) > 0 {
		n := copy(buf[:], s)
		h.Write(buf[:n])
		s = s[n:]
	}
	return h.Sum(nil)
}

// seedsCache reports whether a cache mount with from= starts from the source's files. BuildKit
// mounts from=X,source=P as X's P; without source but with uid, gid or mode it mounts a new
// /cache directory made in X with those attributes instead, i.e. an empty directory, which is
// what a cache mount without from= starts as.
func seedsCache(m *graph.Mount) bool {
	return cacheSeedPath(m) != "." || (m.UID == nil && m.GID == nil && m.Mode == nil)
}

// cacheSeedPath is the directory (or file) of the from= source a cache mount starts from.
func cacheSeedPath(m *graph.Mount) string {
	p := path.Clean("/" + m.Source)
	if p == "/" {
		return "."
	}
	return p
}

func fromIdentity(src graph.Source) string {
	switch {
	case src.Stage != nil:
		return "stage" // the selection digest carries what was read
	case src.Image != "":
		return "image"
	case src.Context != "":
		return "context:" + src.Context
	}
	return "context"
}

// copyDest makes a COPY destination absolute against the step's WORKDIR, keeping a trailing slash.
// copySemantics names the copier behaviour changes a COPY/ADD step is exposed to, so that a
// layer stored before a change can never answer a step whose result it changed. Only the steps
// a change can affect get a field, so every other step keeps its key.
func copySemantics(step *graph.Step) map[string]any {
	c := step.Copy
	m := map[string]any{}
	dest := copyDest(step)
	if !strings.HasSuffix(dest, "/") && !c.Parents && slices.ContainsFunc(c.Srcs, contenthash.HasWildcards) {
		// A wildcard matching several entries to a name without "/": once a directory of them,
		// now each copied to that name in turn (BuildKit: the last file wins).
		m["severalToName"] = "eachInTurn"
	}
	if c.Link {
		// --link copies into an empty filesystem (was: onto the parent's, like a plain COPY).
		m["link"] = "scratch"
	} else {
		// What the parent holds at the destination now changes the result (see copyVersion).
		m["copyVersion"] = copyVersion
	}
	if replacesMode(c.Chmod) {
		// Directories the copy creates take an octal --chmod's permission bits (was 0755).
		m["createdDirs"] = "chmod"
	}
	return m
}

func copyDest(step *graph.Step) string {
	d := step.Copy.Dest
	if path.IsAbs(d) {
		return d
	}
	dir := step.Dir
	if dir == "" {
		dir = "/"
	}
	j := path.Join(dir, d)
	// An empty destination (COPY f $unset) is the working directory itself, as "." is; without
	// the "/" a --link copy, which cannot see that the directory exists, would write a file
	// named like it (case link-empty-dest).
	if d == "" || strings.HasSuffix(d, "/") || d == "." || strings.HasSuffix(d, "/.") {
		j += "/"
	}
	return j
}

// selectFrom selects srcs in a context, stage or image. A stage or image selection that a memo
// already answers is not made (see lazySource) unless the stage ignores the cache.
func (s *solver) selectFrom(ctx context.Context, st *graph.Stage, step *graph.Step, from graph.Source, srcs, excludes []string, in *inputs) (source, error) {
	switch {
	case from.Stage != nil:
		dep, err := s.wait(ctx, from.Stage)
		if err != nil {
			return source{}, err
		}
		return s.selectInFSMemo(ctx, st, step, dep.fs, srcs, excludes, in, "stage "+from.Stage.DisplayName())
	case from.Image != "":
		base, err := s.opts.Images.Load(ctx, from.Image, from.Digest, st.Platform)
		if err != nil {
			return source{}, err
		}
		return s.selectInFSMemo(ctx, st, step, base.fs, srcs, excludes, in, "image "+from.Image)
	case from.Context != "":
		dir, ok := s.opts.NamedContexts[from.Context]
		if !ok {
			return source{}, fmt.Errorf("build context %q was not given: pass --build-context %s=DIR", from.Context, from.Context)
		}
		cs := selectRules(step, &contenthash.Source{Root: dir, NormalizePerms: s.opts.NormalizePerms})
		sel, err := cs.Select(ctx, srcs, excludes)
		if err != nil {
			return source{}, err
		}
		return source{root: dir, sel: sel, ctx: true}, nil
	default:
		cs := selectRules(step, &contenthash.Source{Root: s.opts.ContextDir, Ignore: s.opts.Ignore, StatCache: s.opts.StatCache, NormalizePerms: s.opts.NormalizePerms})
		sel, err := cs.Select(ctx, srcs, excludes)
		if err != nil {
			return source{}, err
		}
		return source{root: s.opts.ContextDir, sel: sel, ctx: true}, nil
	}
}

// selectRules gives COPY/ADD sources BuildKit's matching rules: a wildcard may match nothing,
// and --parents patterns let "**" span directories. RUN mounts keep the strict rules (a bind
// mount's source must exist).
func selectRules(step *graph.Step, cs *contenthash.Source) *contenthash.Source {
	if c := step.Copy; c != nil {
		cs.EmptyWildcards, cs.Parents = true, c.Parents
	}
	return cs
}

// selectInFSMemo answers a stage or image selection from its memo (the store's, else an
// imported cache's) when there is one, mounting nothing; otherwise it makes the real selection.
func (s *solver) selectInFSMemo(ctx context.Context, st *graph.Stage, step *graph.Step, f fsState, srcs, excludes []string, in *inputs, what string) (source, error) {
	mk := memoKey(step, f, srcs, excludes)
	if !s.noCache(st) {
		if m, ok := s.lookupSelection(mk); ok {
			return source{lazy: &lazySource{fs: f, srcs: srcs, excludes: excludes, what: what, memo: m}}, nil
		}
	}
	return s.selectInFS(ctx, step, f, srcs, excludes, in, what)
}

// selectInFS mounts a stage's or image's filesystem read-only (until the step's inputs are
// released) and selects srcs in it, owners included. It writes the selection's memo.
func (s *solver) selectInFS(ctx context.Context, step *graph.Step, f fsState, srcs, excludes []string, in *inputs, what string) (source, error) {
	root, cleanup, err := s.mountRO(f)
	if err != nil {
		return source{}, err
	}
	in.cleanups = append(in.cleanups, cleanup)
	cs := selectRules(step, &contenthash.Source{Root: root, Owners: true, Where: what})
	sel, err := cs.Select(ctx, srcs, excludes)
	if errors.Is(err, contenthash.ErrNotFound) {
		return source{}, err // it names the stage or image already
	}
	if err != nil {
		return source{}, fmt.Errorf("%s: %w", what, err)
	}
	s.rememberSelection(memoKey(step, f, srcs, excludes), step, sel)
	return source{root: root, sel: sel}, nil
}

// memoVersion changes whenever what a selection memo holds, or how its key is made, changes.
// 2: selections record hard links, and --exclude no longer drops a match itself (a memo made
// before could hold another selection).
const memoVersion = 2

// memoKey names a selection in a stage's or image's filesystem: the filesystem's content
// identity (its chain of content IDs, no timestamps), the source patterns and excludes, the
// step options keyDigest reads (whether an octal --chmod and --chown are set) and --parents,
// which changes what "**" matches. The selection (owners included) is a pure function of these,
// so a memo can be shared between machines and never goes stale.
func memoKey(step *graph.Step, f fsState, srcs, excludes []string) string {
	chmod, chown := false, false
	if c := step.Copy; c != nil {
		chmod, chown = replacesMode(c.Chmod), c.Chown != ""
	}
	if excludes == nil {
		excludes = []string{} // no excludes, however the frontend spelled them
	}
	doc := map[string]any{"v": memoVersion, "key": keyVersion, "fs": f.chain, "srcs": srcs, "excludes": excludes, "chmod": chmod, "chown": chown}
	if c := step.Copy; c != nil && c.Parents {
		// "**" selects other files under --parents. Only set when true, so the memos of
		// every other selection keep their names.
		doc["parents"] = true
	}
	data, _ := json.Marshal(doc)
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// selectionMemo condenses a real selection into its memo.
func selectionMemo(step *graph.Step, sel *contenthash.Selection) store.SelectionMemo {
	m := store.SelectionMemo{KeyDigest: keyDigest(step, sel), Digest: sel.Digest, Files: len(sel.Files)}
	if len(sel.Files) <= maxSummaryFiles {
		m.Summary = make(map[string]string, len(sel.Files))
		for _, f := range sel.Files {
			m.Summary[f.Path] = fileSig(f)
		}
	}
	return m
}

// lookupSelection finds a memo in the store, else in the imported caches (adopting it into the
// store). It counts as used by this build (Result.Selections).
func (s *solver) lookupSelection(mk string) (store.SelectionMemo, bool) {
	m, err := s.opts.Store.GetSelection(mk)
	if err != nil {
		if s.opts.Remote == nil {
			return store.SelectionMemo{}, false
		}
		var ok bool
		if m, ok = s.opts.Remote.LookupSelection(mk); !ok || !m.Valid() {
			return store.SelectionMemo{}, false
		}
		s.opts.Store.PutSelection(mk, m) // best effort: a lost memo costs a mount, nothing more
	}
	s.noteSelection(mk, m)
	return m, true
}

// rememberSelection writes the memo of a selection just made. A write that fails costs the next
// build a mount, nothing more, so it is not an error.
func (s *solver) rememberSelection(mk string, step *graph.Step, sel *contenthash.Selection) {
	m := selectionMemo(step, sel)
	s.opts.Store.PutSelection(mk, m)
	s.noteSelection(mk, m)
}

func (s *solver) noteSelection(mk string, m store.SelectionMemo) {
	s.mu.Lock()
	if s.selections == nil {
		s.selections = map[string]store.SelectionMemo{}
	}
	s.selections[mk] = m
	s.mu.Unlock()
}

// lazy reports whether the key rests on a selection memo.
func (in *inputs) lazy() bool {
	for _, src := range in.srcs {
		if src.lazy != nil {
			return true
		}
	}
	for _, src := range in.mounts {
		if src.lazy != nil {
			return true
		}
	}
	return false
}

// materialize makes the real selection of every source known only from its memo (mounting its
// filesystem, which fetches lazy layers), so the step can execute on it. It also rewrites the
// memos from what was found.
func (s *solver) materialize(ctx context.Context, step *graph.Step, in *inputs) error {
	one := func(src source) (source, error) {
		if src.lazy == nil {
			return src, nil
		}
		l := src.lazy
		return s.selectInFS(ctx, step, l.fs, l.srcs, l.excludes, in, l.what)
	}
	for i, src := range in.srcs {
		r, err := one(src)
		if err != nil {
			return err
		}
		in.srcs[i] = r
	}
	for t, src := range in.mounts {
		r, err := one(src)
		if err != nil {
			return fmt.Errorf("mount %s: %w", t, err)
		}
		in.mounts[t] = r
	}
	return nil
}

// fetchURL downloads an ADD URL into scratch space; its content digest is the step's input.
func (s *solver) fetchURL(ctx context.Context, u, checksum string) (urlFile, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return urlFile{}, fmt.Errorf("ADD %s: %w", u, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return urlFile{}, fmt.Errorf("ADD %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return urlFile{}, fmt.Errorf("ADD %s: server answered %s", u, resp.Status)
	}
	dir, err := s.opts.Store.TempDir("url-")
	if err != nil {
		return urlFile{}, err
	}
	name := path.Base(req.URL.Path)
	if name == "/" || name == "." || name == "" {
		name = "index.html"
	}
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return urlFile{}, err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return urlFile{}, fmt.Errorf("ADD %s: %w", u, err)
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	if checksum != "" && checksum != d.String() {
		return urlFile{}, fmt.Errorf("ADD %s: checksum mismatch: expected %s, got %s", u, checksum, d)
	}
	return urlFile{url: u, name: name, path: p, digest: d}, nil
}

// explain says why a step missed, comparing with the last inputs seen at the same position.
func explain(prev, cur map[string]string) string {
	if prev == nil {
		return "no earlier build of this step"
	}
	if prev["instruction"] != cur["instruction"] {
		return "instruction changed"
	}
	if prev["base"] != cur["base"] && cur["base"] != "" {
		ref, dg, _ := strings.Cut(cur["base"], "@")
		return fmt.Sprintf("base image %s now resolves to %s", ref, dg)
	}
	if prev["parent"] != cur["parent"] {
		return "parent step changed"
	}
	var envs []string
	for k, v := range cur {
		if strings.HasPrefix(k, "env:") && prev[k] != v {
			envs = append(envs, strings.TrimPrefix(k, "env:"))
		}
	}
	for k := range prev {
		if _, ok := cur[k]; !ok && strings.HasPrefix(k, "env:") {
			envs = append(envs, strings.TrimPrefix(k, "env:"))
		}
	}
	if len(envs) > 0 {
		sort.Strings(envs)
		return "build arg or env " + strings.Join(envs, ", ") + " changed"
	}
	if r := fileChanges(prev, cur); r != "" {
		return r
	}
	for k, v := range cur {
		if strings.HasPrefix(k, "mount:") && prev[k] != v {
			return "files in mount " + strings.TrimPrefix(k, "mount:") + " changed"
		}
		if strings.HasPrefix(k, "git:") && prev[k] != v && prev[k] != "" {
			return fmt.Sprintf("git ref %s moved: %s → %s", strings.TrimPrefix(k, "git:"), prev[k], v)
		}
		if strings.HasPrefix(k, "url:") && prev[k] != v {
			return "content of " + strings.TrimPrefix(k, "url:") + " changed"
		}
	}
	if prev["sel"] != cur["sel"] {
		return "source files changed"
	}
	if prev["sandbox"] != cur["sandbox"] {
		return "RUN sandbox changed (--add-host, --ulimit, --shm-size or BUILDKIT_SANDBOX_HOSTNAME)"
	}
	if prev["def"] != cur["def"] {
		return "instruction options changed"
	}
	return "no cache record (pruned or never stored)"
}

// fileChanges names the first changed file and counts the rest.
func fileChanges(prev, cur map[string]string) string {
	if prev["files-omitted"] != "" {
		return "" // an imported summary that travelled without its file list
	}
	var changed []string
	modeOnly := map[string]bool{}
	for k, v := range cur {
		if !strings.HasPrefix(k, "file:") {
			continue
		}
		p, ok := prev[k]
		if !ok {
			changed = append(changed, strings.TrimPrefix(k, "file:")+" added")
			continue
		}
		if p != v {
			name := strings.TrimPrefix(k, "file:")
			pm, prest, _ := strings.Cut(p, " ")
			cm, crest, _ := strings.Cut(v, " ")
			if prest == crest && pm != cm {
				modeOnly[name] = true
				changed = append(changed, "file mode changed on "+name)
			} else {
				changed = append(changed, name+" changed")
			}
		}
	}
	for k := range prev {
		if strings.HasPrefix(k, "file:") {
			if _, ok := cur[k]; !ok {
				changed = append(changed, strings.TrimPrefix(k, "file:")+" removed")
			}
		}
	}
	if len(changed) == 0 {
		return ""
	}
	sort.Strings(changed)
	if len(changed) == 1 {
		return changed[0]
	}
	return fmt.Sprintf("%s (+%d files)", changed[0], len(changed)-1)
}

// keyDigest is the selection's digest as the step reads it: an octal --chmod replaces every
// permission bit and --chown every owner, so source modes (or owners) that the copy overwrites
// must not cause a miss. A symbolic --chmod (u+x, a+X) starts from the source's mode, which stays.
func keyDigest(step *graph.Step, sel *contenthash.Selection) string {
	c := step.Copy
	if c == nil || (!replacesMode(c.Chmod) && c.Chown == "") {
		return string(sel.Digest)
	}
	chmod := replacesMode(c.Chmod)
	h := sha256.New()
	fmt.Fprintf(h, "chmod=%t chown=%t\n", chmod, c.Chown != "")
	for _, m := range sel.Matches {
		fmt.Fprintf(h, "m %q %q %t\n", m.Pattern, m.Path, m.IsDir)
	}
	for _, f := range sel.Files {
		mode := f.Mode
		if chmod {
			mode = f.Mode.Type()
		}
		uid, gid := f.UID, f.GID
		if c.Chown != "" {
			uid, gid = 0, 0
		}
		fmt.Fprintf(h, "f %q %o %d %q %s %d %d\n", f.Path, uint32(mode), f.Size, f.Link, f.Digest(), uid, gid)
		if f.HardLink != "" {
			fmt.Fprintf(h, "h %q\n", f.HardLink) // only when set: other selections keep their digest
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// replacesMode reports whether --chmod sets every permission bit whatever the source's mode was
// (an octal mode); a symbolic one (g-w, a+X) reads the source's mode.
func replacesMode(chmod string) bool {
	if chmod == "" {
		return false
	}
	m, err := copier.ParseChmod(chmod)
	return err == nil && m.IsOctal()
}
