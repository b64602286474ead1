package main

import (
	"fmt"
	"strings"
	"testing"
)

// A cold build's FROM is not a cache hit: its layers are still in the registry. The pull of a
// layer a step needs and the push of the result report byte progress (issue 11: pull/push bytes
// in json and tty); a rebuild on the same store shows FROM CACHED and pulls nothing.
func TestProgressBytesForPullAndPush(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("bytes", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nRUN echo pulled > /x\n",
	})
	ref := testReg.Addr() + "/progress-bytes:1"
	evs := progressJSONBuild(t, e, true, "-t", ref, "--push", ctx)

	kindsOf := func(evs []map[string]any, prefix string) []string {
		var k []string
		for _, ev := range evs {
			if name, _ := ev["name"].(string); strings.HasPrefix(name, prefix) {
				k = append(k, ev["kind"].(string))
			}
		}
		return k
	}
	from := kindsOf(evs, "[1/2] FROM")
	if strings.Contains(fmt.Sprint(from), "cached") || !strings.Contains(fmt.Sprint(from), "done") {
		t.Errorf("cold FROM events %v, want done and never cached", from)
	}
	// The last bytes event of each transfer has current == total.
	finished := func(prefix string) (n int) {
		for _, ev := range evs {
			name, _ := ev["name"].(string)
			if ev["kind"] != "bytes" || !strings.HasPrefix(name, prefix) {
				continue
			}
			if !strings.HasPrefix(fmt.Sprint(ev["id"]), "sha256:") {
				t.Errorf("bytes event without a digest id: %v", ev)
			}
			if ev["total"] != nil && ev["current"] == ev["total"] {
				n++
			}
		}
		return n
	}
	if n := finished("[internal] pull layer"); n != 1 {
		t.Errorf("%d finished pull byte counts for busybox's one layer, want 1\n%v", n, evs)
	}
	if n := finished("pushing"); n < 1 {
		t.Errorf("no finished push byte count\n%v", evs)
	}

	evs = progressJSONBuild(t, e, true, "-t", ref, ctx)
	if from := kindsOf(evs, "[1/2] FROM"); !strings.Contains(fmt.Sprint(from), "cached") {
		t.Errorf("warm FROM events %v, want cached", from)
	}
	if k := kindsOf(evs, "[internal] pull layer"); len(k) != 0 {
		t.Errorf("a warm rebuild pulled: %v", k)
	}
}
