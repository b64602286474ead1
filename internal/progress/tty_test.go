package progress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeTTY is a TTY with no redraw loop, a clock the test moves and a size it sets.
type fakeTTY struct {
	*TTY
	buf           bytes.Buffer
	now           time.Time
	width, height int
}

func newFakeTTY(width, height int) *fakeTTY {
	f := &fakeTTY{now: t0, width: width, height: height}
	f.TTY = newTTY(&f.buf, func() time.Time { return f.now }, func() (int, int) { return f.width, f.height })
	return f
}

func (f *fakeTTY) at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func (f *fakeTTY) emit(id int, name string, k Kind, data string, sec float64) {
	f.Emit(Event{Vertex: id, Name: name, Kind: k, Data: data, Time: f.at(sec)})
}

func (f *fakeTTY) frameAt(sec float64, final bool) []string {
	f.now = f.at(sec)
	return f.frame(f.now, f.width, f.height, final)
}

func checkFrame(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("frame:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

const (
	from = "[1/3] FROM docker.io/library/busybox"
	cp   = "[2/3] COPY . /src"
	run  = "[3/3] RUN ./build.sh"
)

// A build in progress, seen at 60 columns: finished steps one line each with their time, the
// running one with its timer, why it runs and the end of its output.
func TestTTYFrameLayout(t *testing.T) {
	f := newFakeTTY(60, 30)
	checkFrame(t, f.frameAt(0, false), "[+] Building 0.0s (0/0)")

	f.emit(1, from, Started, "", 0.1)
	f.emit(1, from, Cached, "", 0.2)
	f.emit(2, cp, Started, "", 0.2)
	f.emit(2, cp, Miss, "file src/a.js changed", 0.2)
	f.emit(2, cp, Done, "", 1.5)
	f.emit(3, run, Started, "", 1.5)
	f.emit(3, run, Miss, "the step before it changed", 1.5)
	for i := 1; i <= 7; i++ {
		f.emit(3, run, Log, fmt.Sprintf("line %d", i), 1.5+float64(i)/10)
	}
	checkFrame(t, f.frameAt(4.25, false),
		"[+] Building 4.2s (2/3)",
		"=> CACHED [1/3] FROM docker.io/library/busybox         0.1s",
		"=> [2/3] COPY . /src                                   1.3s",
		"=> [3/3] RUN ./build.sh                                2.8s",
		"=> => miss: the step before it changed",
		"=> => # line 3",
		"=> => # line 4",
		"=> => # line 5",
		"=> => # line 6",
		"=> => # line 7",
	)

	f.emit(3, run, Done, "", 5)
	checkFrame(t, f.frameAt(5.5, true),
		"[+] Building 5.5s (3/3) FINISHED",
		"=> CACHED [1/3] FROM docker.io/library/busybox         0.1s",
		"=> [2/3] COPY . /src                                   1.3s",
		"=> [3/3] RUN ./build.sh                                3.5s",
	)
}

// At 20 columns nothing wraps: every line is cut to 19, timers stay at the edge while they fit.
func TestTTYFrameNarrow(t *testing.T) {
	f := newFakeTTY(20, 30)
	f.emit(1, run, Started, "", 0)
	f.emit(1, run, Log, strings.Repeat("x", 100), 0.5)
	got := f.frameAt(2, false)
	checkFrame(t, got,
		"[+] 2.0s (0/1)",
		"=> [3/3] RUN . 2.0s",
		"=> => # xxxxxxxxxxx",
	)
	for w := 1; w <= 12; w++ {
		f.width = w
		for _, l := range f.frameAt(2, false) {
			if displayWidth(l) > max(w-1, 1) {
				t.Errorf("width %d: line %q is %d columns", w, l, displayWidth(l))
			}
		}
	}
}

// A short terminal gives up the oldest finished steps first, then output lines.
func TestTTYFrameShortTerminal(t *testing.T) {
	f := newFakeTTY(50, 6)
	for i := 1; i <= 4; i++ {
		f.emit(i, fmt.Sprintf("step %d", i), Started, "", 0)
		f.emit(i, "", Done, "", 1)
	}
	f.emit(5, "step 5", Started, "", 1)
	for i := 1; i <= 4; i++ {
		f.emit(5, "", Log, fmt.Sprintf("out %d", i), 1)
	}
	checkFrame(t, f.frameAt(3, false),
		"[+] Building 3.0s (4/5)",
		"=> step 5                                    2.0s",
		"=> => # out 2",
		"=> => # out 3",
		"=> => # out 4",
	)
	f.height = 8
	// height 8 leaves 7 rows: the header, step 4, step 5 and its four lines.
	checkFrame(t, f.frameAt(3, false),
		"[+] Building 3.0s (4/5)",
		"=> step 4                                    1.0s",
		"=> step 5                                    2.0s",
		"=> => # out 1",
		"=> => # out 2",
		"=> => # out 3",
		"=> => # out 4",
	)
	// The final frame is printed once and may scroll: it keeps every step.
	f.emit(5, "", Done, "", 4)
	if got := f.frameAt(4, true); len(got) != 6 {
		t.Errorf("final frame has %d lines, want 6:\n%s", len(got), strings.Join(got, "\n"))
	}
}

// A failed build ends on the failing step and the end of its output.
func TestTTYFrameFailed(t *testing.T) {
	f := newFakeTTY(60, 30)
	f.emit(1, from, Started, "", 0)
	f.emit(1, from, Cached, "", 0)
	f.emit(2, run, Started, "", 0)
	for i := 1; i <= 12; i++ {
		f.emit(2, run, Log, fmt.Sprintf("out %d", i), 1)
	}
	f.emit(2, run, Failed, "exit code 1", 2)
	f.emit(3, "[other 2/2] RUN sleep 100", Started, "", 0.5)
	f.TTY.err = errors.New("exit code 1")
	want := []string{
		"[+] Building 2.5s (2/3) FAILED",
		"=> CACHED [1/3] FROM docker.io/library/busybox         0.0s",
		"=> ERROR [3/3] RUN ./build.sh                          2.0s",
	}
	for i := 3; i <= 12; i++ {
		want = append(want, fmt.Sprintf("=> => # out %d", i))
	}
	want = append(want, "=> CANCELED [other 2/2] RUN sleep 100                  2.0s")
	checkFrame(t, f.frameAt(2.5, true), want...)

	f.TTY.err = fmt.Errorf("build: %w", context.Canceled)
	if got := f.frameAt(2.5, true)[0]; got != "[+] Building 2.5s (2/3) CANCELED" {
		t.Errorf("header %q", got)
	}
}

func TestTTYStatusAndBytes(t *testing.T) {
	f := newFakeTTY(70, 30)
	f.emit(1, "pushing [reg/app:1]", Started, "", 0)
	f.Emit(Event{Vertex: 1, Kind: Bytes, Data: "sha256:aaaa", Current: 1_500_000, Total: 3_000_000, Time: f.at(1)})
	f.Emit(Event{Vertex: 1, Kind: Bytes, Data: "sha256:bbbb", Current: 2048, Time: f.at(1)})
	f.Emit(Event{Vertex: 1, Kind: Bytes, Data: "sha256:cccc", Current: 10, Total: 10, Time: f.at(1)})
	f.emit(1, "", Status, "pushing sha256:cccc done", 1)
	checkFrame(t, f.frameAt(2, false),
		"[+] Building 2.0s (0/1)",
		"=> pushing [reg/app:1]                                           2.0s",
		"=> => pushing sha256:cccc done",
		"=> => sha256:aaaa 1.5MB / 3.0MB",
		"=> => sha256:bbbb 2.0kB",
	)
}

// What a step prints cannot move the cursor: escapes and control characters go, a progress bar
// redrawn with \r shows its last state, tabs become spaces, wide characters count double.
func TestFitCleans(t *testing.T) {
	for in, want := range map[string]string{
		"\x1b[31mred\x1b[0m":          "red",
		"10%\r50%\r100%\r\n":          "100%",
		"a\tb":                        "a       b",
		"\x1b]0;title\x07x\x08y\x00z": "xyz",
		"bad\xffbyte":                 "bad?byte",
		"日本語テキスト":                     "日本語テ",
		"\x1b[2J\x1b[Hcleared":        "cleared",
	} {
		if got := fit(in, 9); got != want {
			t.Errorf("fit(%q) = %q, want %q", in, got, want)
		}
	}
}

// screen is a tiny terminal: enough of VT100 (text, CR, LF, scrolling, auto-wrap, cursor up,
// erase below, erase line) to replay what the TTY writes and see what a person would.
type screen struct {
	w, h  int
	rows  [][]rune
	x, y  int
	above []string // rows scrolled off the top
}

func newScreen(w, h int) *screen {
	s := &screen{w: w, h: h}
	for range h {
		s.rows = append(s.rows, s.blank())
	}
	return s
}

func (s *screen) blank() []rune { return []rune(strings.Repeat(" ", s.w)) }

func (s *screen) lf() {
	if s.y == s.h-1 {
		s.above = append(s.above, string(s.rows[0]))
		s.rows = append(s.rows[1:], s.blank())
		return
	}
	s.y++
}

// resize keeps what fits, like xterm (no reflow).
func (s *screen) resize(w int) {
	for i, r := range s.rows {
		n := []rune(strings.Repeat(" ", w))
		copy(n, r)
		s.rows[i] = n
	}
	s.w = w
	s.x = min(s.x, w-1)
}

func (s *screen) write(t *testing.T, p string) {
	rs := []rune(p)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; {
		case r == '\r':
			s.x = 0
		case r == '\n': // the tty driver's ONLCR makes it CR LF
			s.x = 0
			s.lf()
		case r == 0x1b:
			if i+1 >= len(rs) || rs[i+1] != '[' {
				t.Fatalf("unexpected escape in %q", p)
			}
			j := i + 2
			for j < len(rs) && (rs[j] >= '0' && rs[j] <= '9') {
				j++
			}
			n, _ := strconv.Atoi(string(rs[i+2 : j]))
			switch rs[j] {
			case 'A':
				s.y = max(0, s.y-max(n, 1))
			case 'J':
				copy(s.rows[s.y][s.x:], s.blank()[s.x:])
				for k := s.y + 1; k < s.h; k++ {
					s.rows[k] = s.blank()
				}
			case 'K':
				copy(s.rows[s.y][s.x:], s.blank()[s.x:])
			default:
				t.Fatalf("unexpected escape %q", string(rs[i:j+1]))
			}
			i = j
		case r < 0x20:
			t.Fatalf("control character %q reached the terminal", r)
		default:
			if s.x == s.w {
				s.x = 0
				s.lf()
			}
			s.rows[s.y][s.x] = r
			s.x++
		}
	}
}

func (s *screen) text() []string {
	var out []string
	for _, r := range s.rows {
		out = append(out, strings.TrimRight(string(r), " "))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// Replaying the bytes the TTY writes through frames, a shrink, a warning and the end leaves the
// screen showing the prompt, the warning and the final frame: no stale line, no wrapped line.
func TestTTYRedrawOnScreen(t *testing.T) {
	f := newFakeTTY(60, 20)
	sc := newScreen(60, 20)
	sc.write(t, "$ strata build .\r\n")
	flush := func() {
		sc.write(t, f.buf.String())
		f.buf.Reset()
	}
	draw := func(sec float64) {
		f.now = f.at(sec)
		f.mu.Lock()
		f.redraw()
		f.mu.Unlock()
		flush()
	}
	draw(0)
	f.emit(1, from, Started, "", 0)
	f.emit(1, from, Cached, "", 0.1)
	f.emit(2, run+" "+strings.Repeat("--flag ", 20), Started, "", 0.1)
	for i := 1; i <= 3; i++ {
		f.emit(2, "", Log, fmt.Sprintf("out %d %s", i, strings.Repeat("=", 70)), 0.2)
	}
	draw(1)
	if got := sc.text(); len(got) != 7 || got[0] != "$ strata build ." || !strings.HasPrefix(got[3], "=> [3/3] RUN ./build.sh --flag") {
		t.Fatalf("screen:\n%s", strings.Join(got, "\n"))
	}
	// The terminal narrows: the next frame must still replace the old one exactly.
	f.width = 30
	sc.resize(30)
	draw(2)
	fmt.Fprintln(f.Writer(), "WARNING: something to say")
	flush()
	draw(3)
	f.emit(2, "", Done, "", 3.5)
	f.Finish(nil)
	flush()
	got := sc.text()
	want := []string{
		"WARNING: something to say",
		"[+] 3.0s (2/2) FINISHED",
		"=> CACHED [1/3] FROM doc 0.1s",
		"=> [3/3] RUN ./build.sh  3.4s",
	}
	// Counting the old lines as rewrapped may clear the prompt too (xterm does not rewrap);
	// what matters is that nothing stale is left.
	if got[0] == "$ strata build ." {
		got = got[1:]
	}
	checkFrame(t, got, want...)
	for _, r := range got {
		if len(r) > 29 {
			t.Errorf("row %q reaches the last column", r)
		}
	}
}

// The live loop, events from several goroutines, text and Finish together (run with -race).
func TestTTYLiveConcurrent(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return buf.Write(p) })
	tty := NewTTY(w)
	r := NewRecorder(tty)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := r.Start(fmt.Sprintf("[%d/4] RUN work", i+1))
			out := v.Writer()
			for j := range 20 {
				fmt.Fprintf(out, "line %d\n", j)
				time.Sleep(5 * time.Millisecond)
			}
			v.Done()
		}()
	}
	fmt.Fprintln(tty.Writer(), "WARNING: in the middle")
	wg.Wait()
	tty.Finish(nil)
	tty.Close(errors.New("ignored: Finish came first"))
	fmt.Fprintln(tty.Writer(), "after the end")
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "WARNING: in the middle\n") || !strings.HasSuffix(out, "after the end\n") {
		t.Errorf("text lost or out of place:\n%q", out)
	}
	final := out[strings.LastIndex(out, "[+] Building"):]
	if !strings.Contains(final, "(4/4) FINISHED\n") || strings.Count(final, "RUN work") != 4 || strings.Contains(final, "\x1b") {
		t.Errorf("final frame:\n%q", final)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
