package progress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// tailLines is how much of a running step's output stays visible under it.
	tailLines = 5
	// failTail is how much of a failed step's output the last frame keeps: enough to see why.
	failTail = 10
	// tickEvery is the redraw rate: timers look live without the redraw costing anything.
	tickEvery = 100 * time.Millisecond
	// maxTransfers bounds the byte-progress lines under one step.
	maxTransfers = 3
)

type vertexState int

const (
	running vertexState = iota
	cached
	done
	failed
)

type transfer struct {
	id             string
	current, total int64
}

type ttyVertex struct {
	name       string
	state      vertexState
	start, end time.Time
	reason     string
	status     string
	transfers  []*transfer
	tail       []string // the last failTail log lines
}

// TTY redraws a live view of the build in place: a header with the elapsed time, one line per
// finished step, and under each running step its timer, why it runs, its transfers and the last
// lines of its output. Every line is cut to the terminal's width, read again for each frame, so
// a narrow or resized terminal never wraps a line and throws the cursor arithmetic off. When the
// build ends the last frame is printed once, in full, and stays.
type TTY struct {
	mu   sync.Mutex
	w    io.Writer
	now  func() time.Time
	size func() (width, height int)

	start    time.Time
	vs       []*ttyVertex
	byID     map[int]*ttyVertex
	drawn    []int // display width of each line of the frame on screen; nil when none is
	text     []byte
	finished bool
	err      error

	stop chan struct{}
	wg   sync.WaitGroup
}

// NewTTY starts drawing on w, which should be a terminal.
func NewTTY(w io.Writer) *TTY {
	t := newTTY(w, time.Now, func() (int, int) {
		if cw, ch, ok := terminalSize(w); ok {
			return cw, ch
		}
		return 80, 24
	})
	t.stop = make(chan struct{})
	t.wg.Add(1)
	go t.loop()
	return t
}

func newTTY(w io.Writer, now func() time.Time, size func() (int, int)) *TTY {
	return &TTY{w: w, now: now, size: size, start: now(), byID: map[int]*ttyVertex{}}
}

func (t *TTY) loop() {
	defer t.wg.Done()
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		t.mu.Lock()
		if !t.finished {
			t.redraw()
		}
		t.mu.Unlock()
		select {
		case <-t.stop:
			return
		case <-tick.C:
		}
	}
}

// Emit updates the model; the next tick draws it.
func (t *TTY) Emit(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.byID[e.Vertex]
	if e.Kind == Started || v == nil {
		v = &ttyVertex{name: e.Name, start: e.Time}
		t.byID[e.Vertex] = v
		t.vs = append(t.vs, v)
	}
	switch e.Kind {
	case Cached:
		v.state, v.end = cached, e.Time
	case Miss:
		v.reason = e.Data
	case Log:
		v.tail = append(v.tail, e.Data)
		if len(v.tail) > failTail {
			v.tail = v.tail[len(v.tail)-failTail:]
		}
	case Status:
		v.status = e.Data
	case Bytes:
		var tr *transfer
		for _, x := range v.transfers {
			if x.id == e.Data {
				tr = x
			}
		}
		if tr == nil {
			tr = &transfer{id: e.Data}
			v.transfers = append(v.transfers, tr)
		}
		tr.current, tr.total = e.Current, e.Total
	case Done:
		v.state, v.end = done, e.Time
	case Failed:
		v.state, v.end = failed, e.Time
	}
}

// Writer prints other text above the live view, which is drawn again below it.
func (t *TTY) Writer() io.Writer {
	return lockedWriter{mu: &t.mu, write: func(p []byte) (int, error) {
		if t.finished {
			return t.w.Write(p)
		}
		t.text = append(t.text, p...)
		i := bytes.LastIndexByte(t.text, '\n')
		if i < 0 {
			return len(p), nil
		}
		var b bytes.Buffer
		t.erase(&b)
		b.Write(t.text[:i+1])
		t.text = append(t.text[:0], t.text[i+1:]...)
		if _, err := t.w.Write(b.Bytes()); err != nil {
			return 0, err
		}
		t.redraw()
		return len(p), nil
	}}
}

// Finish stops the live view and prints the last frame: every step on one line, a failed step
// followed by the end of its output.
func (t *TTY) Finish(err error) {
	t.mu.Lock()
	if t.finished {
		t.mu.Unlock()
		return
	}
	t.finished, t.err = true, err
	t.mu.Unlock()
	if t.stop != nil {
		close(t.stop)
		t.wg.Wait()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	width, _ := t.size()
	var b bytes.Buffer
	t.erase(&b)
	if len(t.vs) > 0 {
		for _, l := range t.frame(t.now(), width, 0, true) {
			b.WriteString(l)
			b.WriteString("\n")
		}
	}
	if len(t.text) > 0 {
		b.Write(t.text)
		t.text = nil
	}
	t.w.Write(b.Bytes())
}

// Close finishes the view if Finish has not.
func (t *TTY) Close(err error) { t.Finish(err) }

// erase moves the cursor back to where the last frame began and clears from there down.
func (t *TTY) erase(b *bytes.Buffer) {
	if t.drawn == nil {
		return
	}
	width, _ := t.size()
	rows := 0
	for _, n := range t.drawn {
		// After a shrink the terminal may have rewrapped the old lines; counting as if it did
		// errs towards clearing a line too many, never towards leaving one behind.
		rows += max(1, (n+width-1)/max(width, 1))
	}
	fmt.Fprintf(b, "\r\x1b[%dA\x1b[J", rows)
	t.drawn = nil
}

func (t *TTY) redraw() {
	width, height := t.size()
	lines := t.frame(t.now(), width, height, false)
	var b bytes.Buffer
	t.erase(&b)
	t.drawn = make([]int, len(lines))
	for i, l := range lines {
		b.WriteString(l)
		b.WriteString("\n")
		t.drawn[i] = displayWidth(l)
	}
	t.w.Write(b.Bytes())
}

// frame lays out one screen. A live frame fits in height-1 rows (the cursor needs the last one),
// giving up first the oldest finished steps, then output lines; the final frame (height ignored)
// has everything.
func (t *TTY) frame(now time.Time, width, height int, final bool) []string {
	cols := max(width-1, 1) // never the last column: some terminals wrap as soon as it is written
	finished := 0
	for _, v := range t.vs {
		if v.state != running {
			finished++
		}
	}
	outcome := ""
	if final {
		switch {
		case t.err == nil:
			outcome = " FINISHED"
		case errors.Is(t.err, context.Canceled):
			outcome = " CANCELED"
		default:
			outcome = " FAILED"
		}
	}
	counts := fmt.Sprintf("%s (%d/%d)%s", seconds(now.Sub(t.start)), finished, len(t.vs), outcome)
	head := "[+] Building " + counts
	if displayWidth(head) > cols {
		head = "[+] " + counts // the outcome matters more than the word
	}
	out := []string{fit(head, cols)}

	type block struct {
		v     *ttyVertex
		lines []string
	}
	build := func(tail int) []block {
		var bs []block
		for _, v := range t.vs {
			bs = append(bs, block{v, t.vertexLines(v, now, cols, tail, final)})
		}
		return bs
	}
	count := func(bs []block) int {
		n := 1
		for _, b := range bs {
			n += len(b.lines)
		}
		return n
	}
	bs := build(tailLines)
	if !final {
		budget := max(height-1, 2)
		for count(bs) > budget {
			i := -1
			for j, b := range bs {
				if b.v.state != running {
					i = j
					break
				}
			}
			if i < 0 {
				break
			}
			bs = append(bs[:i], bs[i+1:]...)
		}
		for tail := tailLines - 1; count(bs) > budget && tail >= 0; tail-- {
			kept := bs
			bs = nil
			for _, b := range kept {
				bs = append(bs, block{b.v, t.vertexLines(b.v, now, cols, tail, false)})
			}
		}
		if count(bs) > budget {
			for i := range bs {
				bs[i].lines = bs[i].lines[:1]
			}
			if len(bs) > budget-1 {
				bs = bs[len(bs)-(budget-1):]
			}
		}
	}
	for _, b := range bs {
		out = append(out, b.lines...)
	}
	return out
}

func (t *TTY) vertexLines(v *ttyVertex, now time.Time, cols, tail int, final bool) []string {
	end := v.end
	prefix := "=> "
	switch v.state {
	case running:
		end = now
		if final {
			prefix = "=> CANCELED "
		}
	case cached:
		prefix = "=> CACHED "
	case failed:
		prefix = "=> ERROR "
	}
	lines := []string{leftRight(prefix+v.name, seconds(end.Sub(v.start)), cols)}
	var sub []string
	switch {
	case v.state == running && !final:
		if v.reason != "" {
			sub = append(sub, "=> => miss: "+v.reason)
		}
		if v.status != "" {
			sub = append(sub, "=> => "+v.status)
		}
		n := 0
		for _, tr := range v.transfers {
			if n == maxTransfers {
				break
			}
			if tr.total > 0 && tr.current >= tr.total {
				continue
			}
			sub = append(sub, "=> => "+tr.id+" "+transferText(tr))
			n++
		}
		if tail > 0 {
			for _, l := range lastN(v.tail, tail) {
				sub = append(sub, "=> => # "+l)
			}
		}
	case v.state == failed && final:
		for _, l := range v.tail {
			sub = append(sub, "=> => # "+l)
		}
	}
	for _, s := range sub {
		lines = append(lines, fit(s, cols))
	}
	return lines
}

func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func transferText(tr *transfer) string {
	if tr.total > 0 {
		return fmt.Sprintf("%s / %s", sizeText(tr.current), sizeText(tr.total))
	}
	return sizeText(tr.current)
}

func sizeText(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, units := float64(n)/unit, "kMGT"
	i := 0
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f%cB", f, units[i])
}

// leftRight puts right at the right edge and cuts left to what is left of cols.
func leftRight(left, right string, cols int) string {
	room := cols - displayWidth(right) - 1
	if room < 4 {
		return fit(left, cols)
	}
	left = fit(left, room)
	return left + strings.Repeat(" ", room-displayWidth(left)+1) + right
}

// fit makes s safe to draw on one row of cols columns: control characters and escape sequences
// from a step's output would move the cursor behind the renderer's back, so they go; what is
// left is cut, never wrapped.
func fit(s string, cols int) string {
	s = clean(s)
	w := 0
	for i, r := range s {
		rw := runeWidth(r)
		if w+rw > cols {
			return s[:i]
		}
		w += rw
	}
	return s
}

// clean drops ANSI escape sequences and control characters, keeps what follows the last carriage
// return (what a terminal would show of a progress bar) and expands tabs.
func clean(s string) string {
	s = strings.TrimRight(s, "\r\n")
	if i := strings.LastIndexByte(s, '\r'); i >= 0 {
		s = s[i+1:]
	}
	var b strings.Builder
	col := 0
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == 0x1b:
			i += escapeLen(s[i:])
			continue
		case r == '\t':
			pad := 8 - col%8
			b.WriteString(strings.Repeat(" ", pad))
			col += pad
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
		case r == utf8.RuneError && n == 1:
			b.WriteByte('?')
			col++
		default:
			b.WriteRune(r)
			col += runeWidth(r)
		}
		i += n
	}
	return b.String()
}

// escapeLen is the length of the escape sequence at the start of s (which begins with ESC).
func escapeLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case '[': // CSI: parameters, then one final byte in @..~
		for i := 2; i < len(s); i++ {
			if s[i] >= 0x40 && s[i] <= 0x7e {
				return i + 1
			}
		}
		return len(s)
	case ']': // OSC: up to BEL or ESC \
		for i := 2; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return len(s)
	}
	return 2
}

func displayWidth(s string) int {
	w := 0
	for _, r := range s {
		w += runeWidth(r)
	}
	return w
}

// runeWidth is the number of columns r takes: 0 for combining marks, 2 for East Asian wide
// characters and emoji, 1 otherwise.
func runeWidth(r rune) int {
	switch {
	case unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || r == 0x200b:
		return 0
	case r >= 0x1100 && r <= 0x115f, r >= 0x2e80 && r <= 0x303e, r >= 0x3041 && r <= 0x33ff,
		r >= 0x3400 && r <= 0x4dbf, r >= 0x4e00 && r <= 0x9fff, r >= 0xa000 && r <= 0xa4cf,
		r >= 0xac00 && r <= 0xd7a3, r >= 0xf900 && r <= 0xfaff, r >= 0xfe30 && r <= 0xfe4f,
		r >= 0xff00 && r <= 0xff60, r >= 0xffe0 && r <= 0xffe6, r >= 0x1f300 && r <= 0x1f64f,
		r >= 0x1f900 && r <= 0x1f9ff, r >= 0x20000 && r <= 0x3fffd:
		return 2
	}
	return 1
}
