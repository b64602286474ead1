package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// parseLines decodes every line of out, failing on any that is not one JSON object.
func parseLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(l))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil || dec.More() {
			t.Fatalf("line %d is not one JSON object (%v): %q", i+1, err, l)
		}
		evs = append(evs, m)
	}
	return evs
}

func TestJSONEveryKind(t *testing.T) {
	var buf bytes.Buffer
	j := NewJSON(&buf)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	j.start = t0
	j.now = func() time.Time { return t0.Add(5 * time.Second) }
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	name := `[2/3] RUN echo "<hi>"`
	for _, e := range []Event{
		{Vertex: 1, Name: "[1/3] FROM base", Kind: Started, Time: at(0)},
		{Vertex: 1, Name: "[1/3] FROM base", Kind: Cached, Time: at(1)},
		{Vertex: 2, Name: name, Kind: Started, Time: at(10)},
		{Vertex: 2, Name: name, Kind: Miss, Data: "file src/a.js changed", Time: at(11)},
		{Vertex: 2, Name: name, Kind: Log, Data: "<hi> & \"bye\"", Time: at(12)},
		{Vertex: 2, Name: name, Kind: Status, Data: "writing layer", Time: at(13)},
		{Vertex: 2, Name: name, Kind: Bytes, Data: "sha256:abc", Current: 10, Total: 100, Time: at(14)},
		{Vertex: 2, Name: name, Kind: Bytes, Data: "sha256:def", Current: 7, Time: at(15)},
		{Vertex: 2, Name: name, Kind: Done, Time: at(1510)},
		{Vertex: 3, Name: "[3/3] RUN false", Kind: Started, Time: at(2000)},
		{Vertex: 3, Name: "[3/3] RUN false", Kind: Failed, Data: "exit code 1", Time: at(2250)},
	} {
		j.Emit(e)
	}
	fmt.Fprintf(j.Writer(), "WARNING: one\n\nERROR: two\npartial")
	j.Finish(errors.New("the build failed"))
	j.Close(errors.New("exit 1")) // Finish's error wins
	j.Emit(Event{Vertex: 4, Kind: Started, Time: at(9000)})
	fmt.Fprintln(j.Writer(), "after the end")

	evs := parseLines(t, buf.String())
	want := []struct {
		kind   string
		fields map[string]string
	}{
		{"start", map[string]string{"vertex": "1", "name": "[1/3] FROM base", "time": "2026-01-02T03:04:05Z"}},
		{"cached", map[string]string{"vertex": "1"}},
		{"start", map[string]string{"vertex": "2", "name": name}},
		{"miss", map[string]string{"vertex": "2", "reason": "file src/a.js changed"}},
		{"log", map[string]string{"vertex": "2", "line": "<hi> & \"bye\""}},
		{"status", map[string]string{"text": "writing layer"}},
		{"bytes", map[string]string{"id": "sha256:abc", "current": "10", "total": "100"}},
		{"bytes", map[string]string{"id": "sha256:def", "current": "7", "total": "<absent>"}},
		{"done", map[string]string{"vertex": "2", "duration_ms": "1500"}},
		{"start", map[string]string{"vertex": "3"}},
		{"error", map[string]string{"vertex": "3", "error": "exit code 1", "duration_ms": "250"}},
		{"message", map[string]string{"text": "WARNING: one", "vertex": "<absent>"}},
		{"message", map[string]string{"text": "ERROR: two"}},
		{"message", map[string]string{"text": "partial"}},
		{"end", map[string]string{"ok": "false", "error": "the build failed", "duration_ms": "5000"}},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d:\n%s", len(evs), len(want), buf.String())
	}
	for i, w := range want {
		ev := evs[i]
		if ev["version"] != json.Number("1") {
			t.Errorf("event %d: version %v, want 1", i, ev["version"])
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(ev["time"])); err != nil {
			t.Errorf("event %d: time %v: %v", i, ev["time"], err)
		}
		if ev["kind"] != w.kind {
			t.Errorf("event %d: kind %v, want %s", i, ev["kind"], w.kind)
		}
		for k, v := range w.fields {
			got, ok := ev[k]
			if v == "<absent>" {
				if ok {
					t.Errorf("event %d (%s): %s = %v, want absent", i, w.kind, k, got)
				}
				continue
			}
			if !ok || fmt.Sprint(got) != v {
				t.Errorf("event %d (%s): %s = %v, want %s", i, w.kind, k, got, v)
			}
		}
	}
	if !strings.Contains(buf.String(), `"<hi> & \"bye\""`) {
		t.Errorf("HTML escaping changed the log text:\n%s", buf.String())
	}
}

func TestJSONEndOnSuccessAndCloseOnly(t *testing.T) {
	var buf bytes.Buffer
	j := NewJSON(&buf)
	j.Close(nil)
	j.Close(errors.New("again")) // a second Close writes nothing
	evs := parseLines(t, buf.String())
	if len(evs) != 1 || evs[0]["kind"] != "end" || evs[0]["ok"] != true || evs[0]["error"] != nil {
		t.Fatalf("want one successful end event, got:\n%s", buf.String())
	}

	buf.Reset()
	j = NewJSON(&buf)
	j.Close(errors.New("--platform=x: nope")) // no Finish: the error given to Close is the outcome
	evs = parseLines(t, buf.String())
	if evs[0]["ok"] != false || evs[0]["error"] != "--platform=x: nope" {
		t.Fatalf("end event: %s", buf.String())
	}
}

// Every field the JSON carries is named in docs/PROGRESS.md, so the schema cannot drift silently.
func TestJSONFieldsDocumented(t *testing.T) {
	doc, err := readDoc()
	if err != nil {
		t.Skip(err)
	}
	for _, f := range []string{"version", "time", "kind", "vertex", "name", "reason", "line", "text", "id", "current", "total", "duration_ms", "error", "ok"} {
		if !strings.Contains(doc, "`"+f+"`") {
			t.Errorf("field %q is not documented in docs/PROGRESS.md", f)
		}
	}
	for _, k := range jsonKinds {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("kind %q is not documented in docs/PROGRESS.md", k)
		}
	}
	for _, k := range []string{JSONMessage, JSONEnd} {
		if !strings.Contains(doc, "`"+k+"`") {
			t.Errorf("kind %q is not documented in docs/PROGRESS.md", k)
		}
	}
}

func TestNewModes(t *testing.T) {
	var buf bytes.Buffer
	for mode, want := range map[string]string{"plain": "passthrough", "auto": "passthrough", "quiet": "passthrough", "json": "*progress.JSON"} {
		r, err := New(mode, &buf) // a buffer is not a terminal, so auto is plain
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%T", r); !strings.HasSuffix(got, want) {
			t.Errorf("--progress=%s: %s, want %s", mode, got, want)
		}
	}
	if _, err := New("fancy", &buf); err == nil || !strings.Contains(err.Error(), "json") {
		t.Errorf("--progress=fancy: %v", err)
	}
}

func readDoc() (string, error) {
	b, err := os.ReadFile("../../docs/PROGRESS.md")
	return string(b), err
}
