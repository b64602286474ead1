package progress

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// JSONVersion is the schema version every JSON event carries (docs/PROGRESS.md). Adding a kind
// or a field keeps it; renaming, removing or changing the meaning of one bumps it.
const JSONVersion = 1

// JSONEvent is one line of --progress=json. Field names are the public schema: change them only
// with JSONVersion.
type JSONEvent struct {
	Version  int    `json:"version"`
	Time     string `json:"time"` // RFC 3339, UTC, nanoseconds
	Kind     string `json:"kind"`
	Vertex   int    `json:"vertex,omitempty"`
	Name     string `json:"name,omitempty"`
	Reason   string `json:"reason,omitempty"`      // miss
	Line     string `json:"line,omitempty"`        // log
	Text     string `json:"text,omitempty"`        // status, message
	ID       string `json:"id,omitempty"`          // bytes: what moves
	Current  *int64 `json:"current,omitempty"`     // bytes
	Total    *int64 `json:"total,omitempty"`       // bytes; absent when unknown
	Duration *int64 `json:"duration_ms,omitempty"` // done, error (since start), end (whole build)
	Error    string `json:"error,omitempty"`       // error, end
	OK       *bool  `json:"ok,omitempty"`          // end
}

// Kind names as they appear in JSON.
const (
	JSONStart   = "start"
	JSONCached  = "cached"
	JSONMiss    = "miss"
	JSONLog     = "log"
	JSONStatus  = "status"
	JSONBytes   = "bytes"
	JSONDone    = "done"
	JSONError   = "error"
	JSONMessage = "message" // a line the CLI printed outside any vertex (warnings, the error report)
	JSONEnd     = "end"     // always the last event
)

var jsonKinds = map[Kind]string{
	Started: JSONStart, Cached: JSONCached, Miss: JSONMiss, Log: JSONLog, Status: JSONStatus,
	Bytes: JSONBytes, Done: JSONDone, Failed: JSONError,
}

// JSON writes one JSON event per line.
type JSON struct {
	mu       sync.Mutex
	w        io.Writer
	now      func() time.Time
	start    time.Time
	starts   map[int]time.Time
	text     []byte // a partial free-text line
	finished bool
	err      error
	end      time.Time
	closed   bool
}

// NewJSON renders to w.
func NewJSON(w io.Writer) *JSON {
	j := &JSON{w: w, now: time.Now, starts: map[int]time.Time{}}
	j.start = j.now()
	return j
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func millis(d time.Duration) *int64 { ms := d.Milliseconds(); return &ms }

// Emit writes one event.
func (j *JSON) Emit(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	je := JSONEvent{Version: JSONVersion, Time: stamp(e.Time), Kind: jsonKinds[e.Kind], Vertex: e.Vertex, Name: e.Name}
	switch e.Kind {
	case Started:
		j.starts[e.Vertex] = e.Time
	case Cached:
	case Miss:
		je.Reason = e.Data
	case Log:
		je.Line = e.Data
	case Status:
		je.Text = e.Data
	case Bytes:
		cur := e.Current
		je.ID, je.Current = e.Data, &cur
		if e.Total > 0 {
			tot := e.Total
			je.Total = &tot
		}
	case Done:
		je.Duration = millis(e.Time.Sub(j.startOf(e)))
	case Failed:
		je.Duration = millis(e.Time.Sub(j.startOf(e)))
		je.Error = e.Data
	default:
		return
	}
	j.write(je)
}

func (j *JSON) startOf(e Event) time.Time {
	if t, ok := j.starts[e.Vertex]; ok {
		return t
	}
	return e.Time
}

func (j *JSON) write(je JSONEvent) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(je) == nil {
		j.w.Write(b.Bytes()) // one Write per line, so readers never see half an event
	}
}

// Writer turns free text into message events, one per line.
func (j *JSON) Writer() io.Writer {
	return lockedWriter{mu: &j.mu, write: func(p []byte) (int, error) {
		j.text = append(j.text, p...)
		for {
			i := bytes.IndexByte(j.text, '\n')
			if i < 0 {
				break
			}
			j.message(string(j.text[:i]))
			j.text = j.text[i+1:]
		}
		return len(p), nil
	}}
}

func (j *JSON) message(s string) {
	if s == "" || j.closed {
		return // the blank lines humans get between sections carry nothing
	}
	j.write(JSONEvent{Version: JSONVersion, Time: stamp(j.now()), Kind: JSONMessage, Text: s})
}

// Finish records the build's outcome for the end event.
func (j *JSON) Finish(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.finished {
		j.finished, j.err, j.end = true, err, j.now()
	}
}

// Close writes the end event; nothing is written after it.
func (j *JSON) Close(err error) {
	j.Finish(err)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	if len(j.text) > 0 {
		j.message(string(j.text))
		j.text = nil
	}
	ok := j.err == nil
	je := JSONEvent{Version: JSONVersion, Time: stamp(j.now()), Kind: JSONEnd, OK: &ok, Duration: millis(j.end.Sub(j.start))}
	if j.err != nil {
		je.Error = j.err.Error()
	}
	j.write(je)
	j.closed = true
}
