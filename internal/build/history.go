package build

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/history"
	"github.com/strata-build/strata/internal/solver"
)

// buildHistory gathers one build's record while it runs and writes it when Run returns, whatever
// the outcome: the steps come from solver.Options.StepDone as they finish (so a failed build still
// has the ones done before the failure), the failing step from the error.
type buildHistory struct {
	o     Options
	ctx   context.Context
	start time.Time

	mu    sync.Mutex
	b     *graph.Build
	steps []doneStep
	// last is when each stage's previous step finished: a hit's duration is measured from it.
	last map[*graph.Stage]time.Time
}

type doneStep struct {
	r    solver.StepResult
	took time.Duration
}

func startHistory(ctx context.Context, o Options) *buildHistory {
	return &buildHistory{o: o, ctx: ctx, start: time.Now(), last: map[*graph.Stage]time.Time{}}
}

// watch returns the StepDone to give the solver: it records the step, then calls next (the build
// flow's own StepDone, or nil).
func (h *buildHistory) watch(b *graph.Build, next func(solver.StepResult)) func(solver.StepResult) {
	h.mu.Lock()
	h.b = b
	solveStart := time.Now()
	for _, st := range b.Stages {
		h.last[st] = solveStart
	}
	h.mu.Unlock()
	return func(r solver.StepResult) {
		now := time.Now()
		h.mu.Lock()
		took := now.Sub(h.last[r.Node])
		if !r.Cached && r.Record != nil {
			// The run time the solver measured excludes waiting for the stages the step reads.
			took = r.Record.Elapsed
		}
		h.last[r.Node] = now
		h.steps = append(h.steps, doneStep{r: r, took: took})
		h.mu.Unlock()
		if next != nil {
			next(r)
		}
	}
}

// mark and truncate drop the steps of an attempt the build makes again (see forgetGone): the
// record keeps the attempt that finished.
func (h *buildHistory) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.steps)
}

func (h *buildHistory) truncate(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.steps = h.steps[:n]
}

// finish writes the record. A history that cannot be written is a warning: the build itself is
// what the user asked for.
func (h *buildHistory) finish(built **Result, errp *error) {
	if h.o.Store == nil {
		return
	}
	keep := h.o.HistoryKeep
	if keep == 0 {
		keep = history.DefaultKeep
	}
	var err error
	if keep < 0 {
		_, err = history.Prune(h.o.Store.Root(), 0)
	} else {
		err = history.Write(h.o.Store.Root(), h.o.Store.Scratch(), h.record(*built, *errp), keep)
	}
	if err != nil && h.o.Warn != nil {
		h.o.Warn(err.Error())
	}
}

func (h *buildHistory) record(built *Result, err error) *history.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := &history.Record{
		ID:               history.NewID(),
		Start:            h.start.UTC(),
		Duration:         time.Since(h.start),
		Dockerfile:       h.o.DockerfilePath,
		DockerfileDigest: digest.FromBytes(h.o.Dockerfile).String(),
		Target:           h.o.Target,
		Context:          h.o.ContextDir,
		// Build args are recorded as given, as BuildKit's history records its build-arg:
		// attributes: they are not secret (they reach RUN's env and the image history). --secret
		// values are never build args and never reach this record.
		BuildArgs: maps.Clone(h.o.BuildArgs),
		Tags:      slices.Clone(h.o.Tags),
		Outcome:   history.OutcomeOK,
		Steps:     []history.Step{},
	}
	if built != nil && built.Image != nil {
		r.Image = built.Image.Manifest.Digest.String()
	}
	if err != nil {
		r.Outcome = history.OutcomeFailed
		if errors.Is(err, context.Canceled) || h.ctx.Err() != nil {
			r.Outcome = history.OutcomeCancelled
		}
		r.Error, _, _ = strings.Cut(err.Error(), "\n")
	}

	order := map[string]int{} // stage name → index, for Dockerfile order
	lines := map[string]int{}
	if h.b != nil {
		for i, st := range h.b.Stages {
			order[st.DisplayName()] = i
			if st.Base.Image != "" && st.Base.Digest != "" && st.Base.Context == "" {
				r.Bases = append(r.Bases, history.Base{Stage: st.DisplayName(), Image: st.Base.Image, Digest: st.Base.Digest})
			}
			for _, s := range st.Steps {
				lines[stepID(st.DisplayName(), s.Pos)] = s.Line
			}
		}
	}
	for _, d := range h.steps {
		s := history.Step{
			Stage: d.r.Stage, Pos: d.r.Pos, Line: lines[stepID(d.r.Stage, d.r.Pos)], Text: d.r.Text, Key: d.r.Key,
			Result: history.ResultMiss, Reason: d.r.Reason, Duration: d.took,
		}
		if d.r.Cached {
			s.Result, s.Remote = history.ResultHit, d.r.Remote
		}
		if d.r.Record != nil {
			s.LastCost = d.r.Record.Elapsed
		}
		if d.r.Layer != nil {
			s.Size = d.r.Layer.Size
		}
		r.Steps = append(r.Steps, s)
	}
	if fs := h.failedStep(err, r.Outcome); fs != nil {
		r.Steps = append(r.Steps, *fs)
	}
	// Steps arrive as stages finish them, interleaved; the record reads in Dockerfile order.
	slices.SortStableFunc(r.Steps, func(a, b history.Step) int {
		if oa, ob := order[a.Stage], order[b.Stage]; oa != ob {
			return oa - ob
		}
		return a.Pos - b.Pos
	})
	return r
}

// failedStep is the step the build failed (or was cancelled) on. The solver reports it only as a
// StepError naming its Dockerfile line (which the graph turns into a stage and position), its key
// and why it ran. The error itself is the record's.
func (h *buildHistory) failedStep(err error, outcome string) *history.Step {
	var se *solver.StepError
	if h.b == nil || !errors.As(err, &se) {
		return nil
	}
	result := history.ResultFailed
	if outcome == history.OutcomeCancelled {
		result = history.ResultCancelled
	}
	for _, st := range h.b.Stages {
		at := func(pos int) *history.Step {
			return &history.Step{Stage: st.DisplayName(), Pos: pos, Line: se.Line, Text: se.Text, Result: result,
				Key: se.Key, Reason: se.Reason, Duration: time.Since(h.last[st])}
		}
		if st.Base.Line == se.Line && st.Base.Text == se.Text {
			return at(1) // FROM is "[stage 1/n]" in progress
		}
		for _, s := range st.Steps {
			if s.Line == se.Line && s.Text == se.Text && s.Kind != graph.KindMeta {
				return at(s.Pos)
			}
		}
	}
	return nil
}

func stepID(stage string, pos int) string { return fmt.Sprintf("%s\x00%d", stage, pos) }
