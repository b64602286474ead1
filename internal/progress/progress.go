// Package progress carries build events from the solver to a renderer. The solver only emits
// events; renderers decide what a person sees (plain follows BuildKit's `#N …` shape, quiet prints
// nothing), so later renderers (tty, json, build records) read the same stream.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Kind is what happened to a vertex.
type Kind int

const (
	Started Kind = iota // a vertex began; Name is set
	Cached              // served from the cache
	Log                 // output line(s) from the vertex (Data)
	Status              // a short status line (Data), e.g. "writing image sha256:… done"
	Miss                // the vertex will run; Data says why
	Done                // finished successfully
	Failed              // finished with Data as the error
	Bytes               // a transfer moved Current of Total bytes; Data names what moves (a digest)
)

// Event is one thing that happened to a vertex.
type Event struct {
	Vertex int
	Name   string
	Kind   Kind
	Data   string
	Time   time.Time
	// Current and Total count bytes, for Bytes events only; Total is 0 when unknown.
	Current, Total int64
}

// Sink receives events. Implementations must be safe for concurrent use.
type Sink interface {
	Emit(Event)
}

// Recorder hands out vertex numbers and stamps events, so the solver never tracks ids itself.
type Recorder struct {
	sink Sink
	mu   sync.Mutex
	next int
}

// NewRecorder wraps a sink.
func NewRecorder(s Sink) *Recorder { return &Recorder{sink: s} }

// Vertex is one numbered unit of progress (a step, a pull, an export).
type Vertex struct {
	r     *Recorder
	id    int
	name  string
	start time.Time
}

// Start begins a vertex.
func (r *Recorder) Start(name string) *Vertex {
	r.mu.Lock()
	r.next++
	id := r.next
	r.mu.Unlock()
	v := &Vertex{r: r, id: id, name: name, start: time.Now()}
	v.emit(Started, "")
	return v
}

func (v *Vertex) emit(k Kind, data string) {
	v.r.sink.Emit(Event{Vertex: v.id, Name: v.name, Kind: k, Data: data, Time: time.Now()})
}

// Cached marks the vertex served from the cache.
func (v *Vertex) Cached() { v.emit(Cached, "") }

// Miss says why the vertex has to run.
func (v *Vertex) Miss(reason string) { v.emit(Miss, reason) }

// Status emits a short status line.
func (v *Vertex) Status(format string, args ...any) { v.emit(Status, fmt.Sprintf(format, args...)) }

// Bytes reports a transfer's progress; renderers that cannot show it (plain) ignore it, so it may
// be called as often as the transfer likes.
func (v *Vertex) Bytes(what string, current, total int64) {
	v.r.sink.Emit(Event{Vertex: v.id, Name: v.name, Kind: Bytes, Data: what, Time: time.Now(), Current: current, Total: total})
}

// Done finishes the vertex.
func (v *Vertex) Done() { v.emit(Done, "") }

// Fail finishes the vertex with an error.
func (v *Vertex) Fail(err error) { v.emit(Failed, err.Error()) }

// Elapsed is the time since Start.
func (v *Vertex) Elapsed() time.Duration { return time.Since(v.start) }

// Writer returns an io.Writer that turns a process's output into Log events, one per line.
func (v *Vertex) Writer() io.Writer { return &lineWriter{v: v} }

type lineWriter struct {
	v   *Vertex
	mu  sync.Mutex
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		w.v.emit(Log, string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	// Bound memory for output without newlines.
	if len(w.buf) > 8192 {
		w.v.emit(Log, string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// Flush emits a trailing partial line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.v.emit(Log, string(w.buf))
		w.buf = nil
	}
}

// Flush emits any partial line a Writer holds.
func Flush(w io.Writer) {
	if lw, ok := w.(*lineWriter); ok {
		lw.Flush()
	}
}

// Plain renders BuildKit's plain format.
type Plain struct {
	mu     sync.Mutex
	w      io.Writer
	starts map[int]time.Time
}

// NewPlain renders to w.
func NewPlain(w io.Writer) *Plain { return &Plain{w: w, starts: map[int]time.Time{}} }

// Emit prints one event.
func (p *Plain) Emit(e Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Kind {
	case Started:
		p.starts[e.Vertex] = e.Time
		fmt.Fprintf(p.w, "\n#%d %s\n", e.Vertex, e.Name)
	case Cached:
		fmt.Fprintf(p.w, "#%d CACHED\n", e.Vertex)
	case Miss:
		fmt.Fprintf(p.w, "#%d MISS: %s\n", e.Vertex, e.Data)
	case Log:
		fmt.Fprintf(p.w, "#%d %.3f %s\n", e.Vertex, e.Time.Sub(p.starts[e.Vertex]).Seconds(), e.Data)
	case Status:
		fmt.Fprintf(p.w, "#%d %s\n", e.Vertex, e.Data)
	case Done:
		fmt.Fprintf(p.w, "#%d DONE %.1fs\n", e.Vertex, e.Time.Sub(p.starts[e.Vertex]).Seconds())
	case Failed:
		fmt.Fprintf(p.w, "#%d ERROR: %s\n", e.Vertex, e.Data)
	}
}

// Quiet discards everything.
type Quiet struct{}

// Emit does nothing.
func (Quiet) Emit(Event) {}

// Collect keeps events in memory (build records, tests).
type Collect struct {
	mu     sync.Mutex
	Events []Event
}

// Emit appends.
func (c *Collect) Emit(e Event) {
	c.mu.Lock()
	c.Events = append(c.Events, e)
	c.mu.Unlock()
}

// Tee sends events to several sinks.
type Tee []Sink

// Emit forwards.
func (t Tee) Emit(e Event) {
	for _, s := range t {
		s.Emit(e)
	}
}

// ByteMeter returns a Bytes reporter for transfers that report every read: per transfer (what),
// it passes on at most one event per interval, plus the first and the last (current == total),
// so a JSON reader gets a handful of lines per blob. Safe for concurrent transfers.
func (v *Vertex) ByteMeter(interval time.Duration) func(what string, current, total int64) {
	var mu sync.Mutex
	last := map[string]time.Time{}
	return func(what string, current, total int64) {
		mu.Lock()
		now := time.Now()
		t, seen := last[what]
		send := !seen || current == total || now.Sub(t) >= interval
		if send {
			last[what] = now
		}
		mu.Unlock()
		if send {
			v.Bytes(what, current, total)
		}
	}
}
