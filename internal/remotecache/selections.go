package remotecache

import (
	"encoding/hex"
	"sort"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/store"
)

// Selection is one selection memo: what the files a COPY --from or RUN --mount=type=bind,from=…
// selects in a stage's or image's filesystem came to, under the solver's memo key (the
// filesystem's content identity, the patterns, the excludes and whether --chmod/--chown are
// set). With it, a runner computes such a step's key without fetching the stage's layers.
type Selection struct {
	Key       string        `json:"key"`
	KeyDigest string        `json:"keyDigest"`
	Digest    digest.Digest `json:"digest"`
	Files     int           `json:"files"`
	// Summary is path → signature of each selected file (for miss reasons), when there are few
	// enough and the config's summary budget allows.
	Summary map[string]string `json:"summary,omitempty"`
}

// maxSummaryBytes bounds the per-file summaries one config carries, so a build with many large
// selections cannot push the config past what readers accept (image.MaxConfigSize). Past it,
// memos travel without summaries: their miss reasons name no file, their keys are the same.
const maxSummaryBytes = 4 << 20

func (s Selection) memo() store.SelectionMemo {
	return store.SelectionMemo{KeyDigest: s.KeyDigest, Digest: s.Digest, Files: s.Files, Summary: s.Summary}
}

func (s Selection) valid() bool {
	if len(s.Key) != 64 {
		return false
	}
	if _, err := hex.DecodeString(s.Key); err != nil {
		return false
	}
	return s.memo().Valid()
}

// validSelections drops memos a reader cannot use (a miss, never an error).
func validSelections(in []Selection) []Selection {
	ok := in[:0]
	for _, s := range in {
		if s.valid() {
			ok = append(ok, s)
		}
	}
	return ok
}

// SelectionEntries turns the selection memos a build used or wrote (solver.Result.Selections)
// into export entries; BuildConfig puts them in the config's selections, for mode=min and
// mode=max alike.
func SelectionEntries(memos map[string]store.SelectionMemo) []Entry {
	out := make([]Entry, 0, len(memos))
	for k, m := range memos {
		out = append(out, Entry{Selection: &Selection{Key: k, KeyDigest: m.KeyDigest, Digest: m.Digest, Files: m.Files, Summary: m.Summary}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Selection.Key < out[j].Selection.Key })
	return out
}

// buildSelections collects the entries' memos, sorted by key, the first of a key winning, with
// summaries kept while they fit maxSummaryBytes.
func buildSelections(entries []Entry) []Selection {
	var out []Selection
	seen := map[string]bool{}
	for _, e := range entries {
		s := e.Selection
		if s == nil || seen[s.Key] || !s.valid() {
			continue
		}
		seen[s.Key] = true
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	budget := maxSummaryBytes
	for i := range out {
		n := 0
		for p, sig := range out[i].Summary {
			n += len(p) + len(sig) + 8
		}
		if n > budget {
			out[i].Summary = nil
			continue
		}
		budget -= n
	}
	return out
}

// LookupSelection satisfies solver.RemoteCache.
func (ix *Index) LookupSelection(memoKey string) (store.SelectionMemo, bool) {
	if ix == nil {
		return store.SelectionMemo{}, false
	}
	s, ok := ix.selections[memoKey]
	if !ok {
		return store.SelectionMemo{}, false
	}
	return s.memo(), true
}

// addSelections imports a config's memos; the first cache that knows a memo key answers it.
func (ix *Index) addSelections(c *Config) {
	if ix.selections == nil {
		ix.selections = map[string]Selection{}
	}
	for _, s := range c.Selections {
		if _, dup := ix.selections[s.Key]; !dup {
			ix.selections[s.Key] = s
		}
	}
}
