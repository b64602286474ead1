package remotecache

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/store"
)

// Selection memos travel in the config for both modes, round-trip through parseConfig, and the
// first cache that knows a memo key answers it.
func TestSelectionsRoundTrip(t *testing.T) {
	k1, k2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	m1 := store.SelectionMemo{KeyDigest: digest.FromString("k1").String(), Digest: digest.FromString("d1"), Files: 2, Summary: map[string]string{"out": "x", "out/app": "y"}}
	m2 := store.SelectionMemo{KeyDigest: digest.FromString("k2").String(), Digest: digest.FromString("d2"), Files: 5000}
	entries := append([]Entry{{Record: store.Record{Key: strings.Repeat("e", 64), Empty: true}}},
		SelectionEntries(map[string]store.SelectionMemo{k2: m2, k1: m1})...)
	entries = append(entries, Entry{Selection: &Selection{Key: "short", KeyDigest: m1.KeyDigest, Digest: m1.Digest}})
	c := BuildConfig(entries, nil)
	if len(c.Records) != 1 {
		t.Fatalf("records %+v: a memo entry must not become a record", c.Records)
	}
	if len(c.Selections) != 2 || c.Selections[0].Key != k1 || c.Selections[1].Key != k2 {
		t.Fatalf("selections %+v, want k1 and k2 sorted (the malformed one dropped)", c.Selections)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(BuildConfig(entries, nil))
	if string(again) != string(data) {
		t.Error("the same entries gave different config bytes")
	}
	// A damaged memo in a config is dropped on read.
	var raw map[string]any
	json.Unmarshal(data, &raw)
	raw["selections"] = append(raw["selections"].([]any), map[string]any{"key": strings.Repeat("3", 64), "keyDigest": "bad", "digest": "sha256:00"})
	data, _ = json.Marshal(raw)
	parsed, err := parseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed.Selections) != 2 {
		t.Fatalf("parsed selections %+v, want the two valid ones", parsed.Selections)
	}

	other := &Config{Version: Version, Selections: []Selection{{Key: k1, KeyDigest: m2.KeyDigest, Digest: m2.Digest, Files: 1}}}
	ix := &Index{entries: map[string]entry{}, mounts: map[string]importedMount{}}
	ix.add(parsed, "reg/first")
	ix.add(other, "reg/second")
	got, ok := ix.LookupSelection(k1)
	if !ok || got.Digest != m1.Digest || got.Summary["out/app"] != "y" {
		t.Errorf("LookupSelection(k1) = %+v, %v; want the first cache's memo", got, ok)
	}
	if _, ok := ix.LookupSelection(strings.Repeat("9", 64)); ok {
		t.Error("LookupSelection answered an unknown key")
	}
	var nilIx *Index
	if _, ok := nilIx.LookupSelection(k1); ok {
		t.Error("nil Index answered")
	}
}

// Summaries past the budget are dropped, the memos themselves kept.
func TestSelectionsSummaryBudget(t *testing.T) {
	big := map[string]string{}
	for i := 0; i < 2000; i++ {
		big[strings.Repeat("p", 1000)+string(rune('a'+i%26))+strings.Repeat("x", i%50)+string(rune(i))] = "644 sha256:" + strings.Repeat("f", 64)
	}
	memos := map[string]store.SelectionMemo{}
	for i := 0; i < 4; i++ {
		memos[strings.Repeat(string(rune('a'+i)), 64)] = store.SelectionMemo{KeyDigest: digest.FromString("k").String(), Digest: digest.FromString("d"), Files: len(big), Summary: big}
	}
	c := BuildConfig(SelectionEntries(memos), nil)
	if len(c.Selections) != 4 {
		t.Fatalf("%d selections, want 4", len(c.Selections))
	}
	kept := 0
	for _, s := range c.Selections {
		if s.Summary != nil {
			kept++
		}
	}
	if kept == 0 || kept == 4 {
		t.Errorf("%d of 4 summaries kept; want the budget to keep some and drop the rest", kept)
	}
}
