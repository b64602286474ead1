package solver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/store"
)

func (s *solver) runStage(ctx context.Context, st *graph.Stage, ss *stageState) error {
	total := 1
	for _, step := range st.Steps {
		if step.Kind != graph.KindMeta {
			total++
		}
	}
	multi := len(s.stages) > 1
	prefix := ""
	if s.opts.LabelPlatforms && st.Platform.Architecture != "" {
		prefix = platformLabel(st.Platform, s.target) + " "
	}
	label := func(pos int) string {
		if multi || st.Name != "" {
			return fmt.Sprintf("[%s%s %d/%d]", prefix, st.DisplayName(), pos, total)
		}
		return fmt.Sprintf("[%s%d/%d]", prefix, pos, total)
	}

	// FROM
	v := s.opts.Progress.Start(label(1) + " " + baseText(st))
	switch {
	case st.Base.Context != "":
		// FROM a local --build-context: the directory is the root filesystem.
		step := &graph.Step{Stage: st, Kind: graph.KindCopy, Line: st.Base.Line, Text: "FROM context " + st.Base.Context, Dir: "/",
			CreatedBy: "FROM context " + st.Base.Context,
			Copy:      &graph.CopyOp{From: graph.Source{Context: st.Base.Context}, Srcs: []string{"."}, Dest: "/"}}
		if err := s.runStep(ctx, st, step, ss, v); err != nil {
			v.Fail(err)
			return err
		}
	case st.Base.Scratch:
		ss.fs = fsState{}
		v.Done()
	case st.Base.Stage != nil:
		dep, err := s.wait(ctx, st.Base.Stage)
		if err != nil {
			v.Fail(err)
			return err
		}
		ss.fs = dep.fs
		ss.history = append([]ocispec.History(nil), dep.history...)
		ss.created = dep.created
		v.Cached()
	default:
		base, err := s.opts.Images.Load(ctx, st.Base.Image, st.Base.Digest, st.Platform)
		if err != nil {
			err = &StepError{Line: st.Base.Line, Text: st.Base.Text, Err: err}
			v.Fail(err)
			return err
		}
		ss.fs = base.fs
		ss.history = base.history
		ss.created = base.created
		// CACHED only when the image is all here: a base whose layers are still in the registry
		// is not a cache hit, and its pull shows as its own line when a step needs the bytes.
		if n, size := s.lazyLayers(base.fs); n > 0 {
			v.Status("%d layer(s), %s, pulled when a step runs on them", n, store.FormatSize(size))
			v.Done()
		} else {
			v.Cached()
		}
	}

	pos := 1
	for _, step := range st.Steps {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if step.Kind == graph.KindMeta {
			if step.CreatedBy == "" {
				// ONBUILD: BuildKit stores the trigger in the config and writes no history.
				continue
			}
			ss.history = append(ss.history, ocispec.History{
				Created:    timePtr(ss.created),
				CreatedBy:  step.CreatedBy,
				Comment:    "buildkit.dockerfile.v0",
				EmptyLayer: true,
			})
			continue
		}
		pos++
		// Wait for the stages a step reads before its progress line starts, so the time shown
		// is the step's own.
		for _, dep := range stepDeps(step) {
			if _, err := s.wait(ctx, dep); err != nil {
				return err
			}
		}
		v := s.opts.Progress.Start(label(pos) + " " + step.Text)
		if err := s.runStep(ctx, st, step, ss, v); err != nil {
			var se *StepError
			if !errors.As(err, &se) {
				err = &StepError{Line: step.Line, Text: step.Text, Err: err}
			}
			v.Fail(err)
			return err
		}
	}
	return nil
}

// platformLabel is BuildKit's progress prefix: the stage's platform, plus "->TARGET" when the
// stage runs on another platform than the one being built (a cross-compiling stage).
func platformLabel(p, target ocispec.Platform) string {
	out := platform.Format(p)
	if target.Architecture == "" || platform.Equal(p, target) {
		return out
	}
	t := platform.Format(target)
	if p.OS == target.OS {
		t = strings.TrimPrefix(t, target.OS+"/")
	}
	return out + "->" + t
}

func baseText(st *graph.Stage) string {
	switch {
	case st.Base.Scratch:
		return "FROM scratch"
	case st.Base.Stage != nil:
		return "FROM " + st.Base.Stage.DisplayName()
	default:
		ref := st.Base.Image
		if st.Base.Digest != "" {
			ref += "@" + st.Base.Digest
		}
		return "FROM " + ref
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// runStep resolves a step's key, serves it from the cache or runs it, and advances the stage.
func (s *solver) runStep(ctx context.Context, st *graph.Stage, step *graph.Step, ss *stageState, v *progress.Vertex) (err error) {
	var res StepResult
	// A step that fails after its key is known says which key and why it ran (build history).
	defer func() {
		var se *StepError
		if err != nil && res.Key != "" && !errors.As(err, &se) {
			err = &StepError{Line: step.Line, Text: step.Text, Key: res.Key, Reason: res.Reason, Err: err}
		}
	}()
	in, err := s.inputs(ctx, st, step, ss)
	if err != nil {
		return err
	}
	defer in.release()
	key := in.key(step, ss.fs.chain, s.opts.Compression)
	position := fmt.Sprintf("%s|%s|%d", s.opts.Position, st.DisplayName(), step.Pos)
	portable := fmt.Sprintf("%s|%s|%d", s.opts.PortablePosition, st.DisplayName(), step.Pos)
	res = StepResult{Stage: st.DisplayName(), Pos: step.Pos, Text: step.Text, Key: key}

	rec, remote, err := s.lookup(st, key)
	if err != nil {
		return err
	}
	if rec == nil && in.lazy() {
		// The key rests on selection memos and the step has to run: make the real selections
		// (mounting the sources, which fetches their layers) and key the step by them. A memo is
		// a pure function of content, so the key normally stays the same; when it does not (a
		// damaged memo, or one naming a selection no record was made from), the real key is
		// looked up once more before executing. Such a memo thus costs at most a miss, never a
		// wrong hit. A memo is written only from a real selection, locally or by the build that
		// exported the cache it comes from, so it is trusted exactly as far as the records there.
		if err := s.materialize(ctx, step, in); err != nil {
			return err
		}
		if k := in.key(step, ss.fs.chain, s.opts.Compression); k != key {
			key, res.Key = k, k
			if rec, remote, err = s.lookup(st, key); err != nil {
				return err
			}
		}
	}
	res.Remote = remote
	summary := in.summary(step, ss.fs.chain)
	if rec != nil {
		v.Cached()
		res.Cached = true
	} else {
		reason := "--no-cache"
		if !s.noCache(st) {
			prev, err := s.opts.Store.Last(position)
			if err != nil && s.opts.Remote != nil {
				prev, _ = s.opts.Remote.LookupInputs(portable)
			}
			reason = explain(prev, summary)
		}
		res.Reason = reason
		v.Miss(reason)
		if in.lazy() {
			return fmt.Errorf("internal error: step would run on a selection known only from its memo")
		}
		rec, err = s.execute(ctx, st, step, ss, in, v, position)
		if err != nil {
			return err
		}
		rec.Key = key
		rec.Step = st.DisplayName() + " " + step.Text
		rec.Elapsed = v.Elapsed()
		if err := s.opts.Store.PutRecord(rec); err != nil {
			return err
		}
		s.opts.Built.add(key)
		v.Done()
	}
	s.opts.Store.SetLast(position, summary)
	if (step.Kind == graph.KindCopy || step.Kind == graph.KindAdd) && !rec.Empty {
		// The snapshot the step's next run links unchanged files from (see linksFor).
		s.opts.Store.SetLastLayer(position, rec.Layer)
	}
	res.Node, res.Record = st, rec
	res.Position, res.Inputs = portable, summary

	created := rec.Created
	if created.Before(ss.created) {
		created = ss.created
	}
	h := ocispec.History{Created: timePtr(rec.Created), CreatedBy: step.CreatedBy, Comment: "buildkit.dockerfile.v0", EmptyLayer: rec.Empty}
	ss.history = append(ss.history, h)
	ss.created = created
	if !rec.Empty {
		l, err := s.opts.Store.GetLayer(rec.Layer)
		if err != nil {
			return fmt.Errorf("layer %s of cached step: %w", rec.Layer, err)
		}
		ss.fs = ss.fs.with(l)
		res.Layer = &l
	}
	s.record(res)
	return nil
}

// lookup finds a key's record in the store, then in the imported caches (remote reports the
// latter). A stage that ignores the cache finds nothing.
func (s *solver) lookup(st *graph.Stage, key string) (rec *store.Record, remote bool, err error) {
	if s.noCache(st) {
		if !s.opts.Built.has(key) {
			return nil, false, nil
		}
		rec, err = s.opts.Store.GetRecord(key)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}
		return rec, false, nil
	}
	rec, err = s.opts.Store.GetRecord(key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if rec == nil && s.opts.Remote != nil {
		if rec, err = s.adoptRemote(key); err != nil {
			return nil, false, err
		}
		remote = rec != nil
	}
	return rec, remote, nil
}

// adoptRemote copies an imported record (and its layer, lazily: no bytes move) into the store, so
// the rest of the build and later builds treat it like a local hit.
func (s *solver) adoptRemote(key string) (*store.Record, error) {
	rec, l, ok := s.opts.Remote.Lookup(key)
	if !ok {
		return nil, nil
	}
	r := *rec
	r.Key = key
	if !r.Empty {
		if l == nil || l.DiffID != r.Layer {
			return nil, nil
		}
		have, err := s.opts.Store.GetLayer(l.DiffID)
		if err != nil || !s.opts.Store.Available(have) {
			if err := s.opts.Store.PutLayer(*l); err != nil {
				return nil, err
			}
		}
	}
	if err := s.opts.Store.PutRecord(&r); err != nil {
		return nil, err
	}
	return &r, nil
}

// stepDeps lists the stages a step reads besides its own.
func stepDeps(step *graph.Step) []*graph.Stage {
	var deps []*graph.Stage
	if step.Copy != nil && step.Copy.From.Stage != nil {
		deps = append(deps, step.Copy.From.Stage)
	}
	if step.Run != nil {
		for _, m := range step.Run.Mounts {
			if m.From != nil && m.From.Stage != nil {
				deps = append(deps, m.From.Stage)
			}
		}
	}
	return deps
}

// lazyLayers counts the layers of fs that are neither unpacked nor held as blobs in the store.
func (s *solver) lazyLayers(fs fsState) (n int, size int64) {
	st := s.opts.Store
	for _, l := range fs.layers {
		if !st.HasSnapshot(l.DiffID) && !st.Has(l.Digest) {
			n++
			size += l.Size
		}
	}
	return n, size
}
