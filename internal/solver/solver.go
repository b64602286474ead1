// Package solver turns a build graph into layers: for every step it computes the cache key, looks
// it up in the store, and on a miss executes the step (COPY/ADD through the copier, RUN through the
// executor, both on an overlay of the parent's snapshots). Independent stages run in parallel. It
// emits progress events and never prints.
package solver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/contenthash"
	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/sshagent"
	"github.com/strata-build/strata/internal/store"
)

// Options configure one solve.
type Options struct {
	Store    *store.Store
	Images   *Resolver // also resolves COPY --from=image and RUN --mount from=image
	Progress *progress.Recorder

	ContextDir    string
	NamedContexts map[string]string // name → local directory
	Ignore        []string          // .dockerignore patterns of the main context
	StatCache     *contenthash.StatCache

	NoCache        bool
	NoCacheFilter  []string // stage names that ignore the cache
	NormalizePerms bool

	Runtime       executor.Config
	Network       string            // default network mode for RUN
	Secrets       map[string][]byte // --secret id → value (never logged, keyed or stored)
	SSH           *sshagent.Agents  // --ssh ids for RUN --mount=type=ssh (keys name the mount, never the agent)
	AllowInsecure bool              // --allow security.insecure
	Compression   string            // gzip (default) or zstd

	// Remote answers keys the store does not know, from imported caches (nil: none).
	Remote RemoteCache
	// Fetch brings a lazy layer's blob (Layer.Remote) into the store when its bytes are needed.
	Fetch func(ctx context.Context, l store.Layer) error
	// FetchStream, when set, is Fetch that copies the bytes to tee as they arrive and says whether
	// tee saw the whole blob in one pass (see remotecache.Fetcher.FetchStream): the layer is then
	// unpacked while it downloads.
	FetchStream func(ctx context.Context, l store.Layer, tee io.Writer) (streamed bool, err error)
	// CacheMount, when set, returns the directory behind RUN --mount=type=cache,id=ID (the
	// store's shared directory otherwise); the build flow uses it to seed mounts from a cache.
	CacheMount func(ctx context.Context, id string) (string, error)
	// StepDone, when set, is told each step's result as soon as it is known (from any stage's
	// goroutine): the build flow starts uploading layers while later steps still run.
	StepDone func(StepResult)
	// SourceDateEpoch (SOURCE_DATE_EPOCH) pins the image's created time and the times of the
	// history entries this build adds, as BuildKit does. It never enters a cache key: it changes
	// the config, which is assembled after the steps, not any layer.
	SourceDateEpoch *time.Time

	// Built, when set, is shared by the solves of one multi-platform build: a step whose key an
	// earlier platform's solve produced is taken from the store even under --no-cache, since it
	// is the same step of the same build (a FROM --platform=$BUILDPLATFORM stage runs once, as in
	// BuildKit, where it is one vertex).
	Built *BuiltKeys

	// LabelPlatforms prefixes progress names with the stage's platform, as BuildKit does when
	// several platforms are built ("[linux/arm64 build 2/3]", "[linux/amd64->arm64 build 2/3]"
	// for a stage that runs on the build platform for another target).
	LabelPlatforms bool

	// Position prefixes step positions in the miss-reason history (Dockerfile path + target), so
	// a miss is explained against the last build of the same Dockerfile.
	Position string
	// PortablePosition is the same without machine-specific paths (the Dockerfile relative to the
	// context): imported caches carry the inputs of each step by it, so a fresh runner still says
	// what changed.
	PortablePosition string
}

// Result is the built target.
type Result struct {
	Image  *image.Image
	Layers []store.Layer // bottom first, for exporters that need the filesystem
	Steps  []StepResult
	// Selections are the selection memos (memo key → memo) this build used or wrote, for cache
	// export: with them another runner computes COPY --from keys without fetching the stage.
	Selections map[string]store.SelectionMemo
}

// RemoteCache answers keys from an imported cache. The layer is nil for a step that changed no
// file; otherwise its bytes may live only in Layer.Remote.
type RemoteCache interface {
	Lookup(key string) (*store.Record, *store.Layer, bool)
	// LookupSelection answers a selection memo key (see memoKey) the store does not know.
	LookupSelection(memoKey string) (store.SelectionMemo, bool)
	// LookupInputs returns the inputs last recorded at a portable step position, for miss reasons.
	LookupInputs(position string) (map[string]string, bool)
}

// StepResult says how one step went (for tests, build records and cache export).
type StepResult struct {
	Stage  string
	Pos    int
	Text   string
	Cached bool
	Remote bool // served by an imported cache
	Reason string
	Key    string

	Node   *graph.Stage
	Record *store.Record
	Layer  *store.Layer // nil for an empty step
	// Position (portable, see Options.PortablePosition) and Inputs say what the step read, so an
	// exported cache can explain a later miss on another machine.
	Position string
	Inputs   map[string]string
}

// fsState is a filesystem: its layers and its identity (chain of content IDs, no timestamps).
type fsState struct {
	layers []store.Layer
	chain  digest.Digest
}

func (f fsState) with(l store.Layer) fsState {
	return fsState{
		layers: append(append([]store.Layer(nil), f.layers...), l),
		chain:  chainOf(f.chain, l.ContentID),
	}
}

func chainOf(parent, id digest.Digest) digest.Digest {
	return digest.FromString(string(parent) + " " + string(id))
}

type stageState struct {
	done    chan struct{}
	err     error
	fs      fsState
	history []ocispec.History
	created time.Time
}

type solver struct {
	opts   Options
	target ocispec.Platform // the build's target platform (graph.Build.Platform)
	// runtimeOK checks the OCI runtime once, when the first RUN has to execute: a fully cached
	// build never pays for it.
	runtimeOK  sync.Once
	runtimeErr error
	stages     map[*graph.Stage]*stageState
	mu         sync.Mutex
	results    []StepResult
	// selections are the memos used or written (under mu).
	selections map[string]store.SelectionMemo
	ctx        context.Context // the solve's context, for lazy fetches deep in mount setup
	snapMu     sync.Mutex
	snapCalls  map[digest.Digest]*snapshotCall // layers being unpacked (under snapMu)
	flatMu     sync.Mutex
	flats      map[string]string // flattened bottoms of tall layer stacks (see fitStack)
}

// Solve builds b.Target and returns its image, stored in the store (not tagged).
func Solve(ctx context.Context, b *graph.Build, opts Options) (*Result, error) {
	if opts.Compression == "" {
		opts.Compression = "gzip"
	}
	if opts.Network == "" {
		opts.Network = "default"
	}
	s := &solver{opts: opts, target: b.Platform, stages: map[*graph.Stage]*stageState{}}
	for _, st := range b.Stages {
		s.stages[st] = &stageState{done: make(chan struct{})}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.ctx = ctx
	var wg sync.WaitGroup
	for _, st := range b.Stages {
		wg.Add(1)
		go func(st *graph.Stage) {
			defer wg.Done()
			ss := s.stages[st]
			defer close(ss.done)
			ss.err = s.runStage(ctx, st, ss)
			if ss.err != nil {
				cancel(ss.err)
			}
		}(st)
	}
	wg.Wait()
	// Report the first real failure, not the cancellations it caused in other stages.
	var first error
	for _, st := range b.Stages {
		if err := s.stages[st].err; err != nil {
			if first == nil || (errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
				first = err
			}
		}
	}
	if first != nil {
		if cause := context.Cause(ctx); cause != nil && errors.Is(first, context.Canceled) && !errors.Is(cause, context.Canceled) {
			first = cause
		}
		return nil, first
	}
	tgt := s.stages[b.Target]
	img, err := s.assemble(b, b.Target, tgt)
	if err != nil {
		return nil, err
	}
	return &Result{Image: img, Layers: tgt.fs.layers, Steps: s.results, Selections: s.selections}, nil
}

// wait blocks until dep is built.
func (s *solver) wait(ctx context.Context, dep *graph.Stage) (*stageState, error) {
	ss, ok := s.stages[dep]
	if !ok {
		return nil, fmt.Errorf("internal error: stage %s not scheduled", dep.DisplayName())
	}
	select {
	case <-ss.done:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	if ss.err != nil {
		return nil, fmt.Errorf("stage %s failed", dep.DisplayName())
	}
	return ss, nil
}

func (s *solver) noCache(st *graph.Stage) bool {
	if s.opts.NoCache {
		return true
	}
	for _, n := range s.opts.NoCacheFilter {
		if strings.EqualFold(n, st.Name) || n == fmt.Sprint(st.Index) {
			return true
		}
	}
	return false
}

func (s *solver) record(r StepResult) {
	s.mu.Lock()
	s.results = append(s.results, r)
	s.mu.Unlock()
	if s.opts.StepDone != nil {
		s.opts.StepDone(r)
	}
}

// BuiltKeys is the set of keys steps of this build executed.
type BuiltKeys struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (b *BuiltKeys) add(key string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys == nil {
		b.keys = map[string]bool{}
	}
	b.keys[key] = true
}

func (b *BuiltKeys) has(key string) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.keys[key]
}

// StepError ties a failure to its Dockerfile line.
type StepError struct {
	Line int
	Text string
	// Key and Reason are the step's cache key and why it ran, when it failed after they were
	// known (empty when it failed resolving its inputs).
	Key, Reason string
	Err         error
}

func (e *StepError) Error() string { return e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }
