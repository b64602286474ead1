package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// progressJSONBuild runs `strata build --progress=json` and returns stderr's events (every line must be
// one JSON object) and stdout.
func progressJSONBuild(t *testing.T, e *env, wantOK bool, args ...string) []map[string]any {
	t.Helper()
	cmd := exec.Command(strataBin, append([]string{"--root", e.root, "build", "--progress=json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if (err == nil) != wantOK {
		t.Fatalf("strata build --progress=json %v: %v (want ok=%v)\n%s", args, err, wantOK, stderr.String())
	}
	var evs []map[string]any
	for i, l := range strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stderr line %d is not JSON (%v): %q\n%s", i+1, err, l, stderr.String())
		}
		if m["version"] != 1.0 || m["kind"] == nil || m["time"] == nil {
			t.Errorf("line %d lacks version/kind/time: %s", i+1, l)
		}
		evs = append(evs, m)
	}
	return evs
}

func TestProgressJSONBuild(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("json", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nCOPY a.txt /a.txt\nRUN echo hello from run && cat /a.txt\n",
		"a.txt":      "one\n",
	})
	evs := progressJSONBuild(t, e, true, ctx)
	last := evs[len(evs)-1]
	if last["kind"] != "end" || last["ok"] != true {
		t.Fatalf("last event is not a successful end: %v", last)
	}
	var sawLog, sawDone bool
	for i, ev := range evs {
		switch ev["kind"] {
		case "start":
			if ev["vertex"] == nil || ev["name"] == nil {
				t.Errorf("start without vertex or name: %v", ev)
			}
		case "log":
			sawLog = sawLog || ev["line"] == "hello from run"
		case "done":
			sawDone = true
			if _, ok := ev["duration_ms"].(float64); !ok {
				t.Errorf("done without duration_ms: %v", ev)
			}
		case "end":
			if i != len(evs)-1 {
				t.Errorf("an end event before the last: %v", ev)
			}
		}
	}
	if !sawLog || !sawDone {
		t.Errorf("no log line from RUN (%v) or no done event (%v)", sawLog, sawDone)
	}

	// Change what COPY reads: its miss event names the file.
	if err := os.WriteFile(filepath.Join(ctx, "a.txt"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs = progressJSONBuild(t, e, true, ctx)
	var reason string
	for _, ev := range evs {
		if ev["kind"] == "miss" && strings.Contains(fmt.Sprint(ev["name"]), "COPY a.txt") {
			reason, _ = ev["reason"].(string)
		}
		if ev["kind"] == "cached" && ev["name"] == nil {
			t.Errorf("cached event without the step's name: %v", ev)
		}
	}
	if !strings.Contains(reason, "a.txt") {
		t.Errorf("the COPY miss does not name a.txt: reason %q", reason)
	}
	if last := evs[len(evs)-1]; last["kind"] != "end" || last["ok"] != true {
		t.Errorf("last event: %v", last)
	}
}

// A failed build: the error report arrives as message events, and the end event, still last,
// carries the step's real error rather than an exit code.
func TestProgressJSONFailedBuild(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("jsonfail", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nRUN echo about to fail && exit 3\n",
	})
	evs := progressJSONBuild(t, e, false, ctx)
	last := evs[len(evs)-1]
	if last["kind"] != "end" || last["ok"] != false || !strings.Contains(fmt.Sprint(last["error"]), "exit code: 3") {
		t.Errorf("last event: %v", last)
	}
	var failed, report bool
	for _, ev := range evs {
		failed = failed || (ev["kind"] == "error" && strings.Contains(fmt.Sprint(ev["name"]), "RUN echo about"))
		report = report || (ev["kind"] == "message" && strings.HasPrefix(fmt.Sprint(ev["text"]), "ERROR: Dockerfile:2"))
	}
	if !failed || !report {
		t.Errorf("error event for the RUN: %v; error report as a message: %v", failed, report)
	}

	// Refused before anything runs: still one stream, ending in the end event with the error.
	evs = progressJSONBuild(t, e, false, "--platform=linux/", ctx)
	if len(evs) != 1 || evs[0]["kind"] != "end" || !strings.Contains(fmt.Sprint(evs[0]["error"]), "invalid platform") {
		t.Errorf("a refused build: %v", evs)
	}
}

// tmuxSession is a terminal of a given size, on a private tmux server so nothing else sees it.
type tmuxSession struct {
	t      *testing.T
	socket string
}

func needTmux(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "apt-get", "install", "-y", "-qq", "tmux").CombinedOutput()
	if _, lerr := exec.LookPath("tmux"); lerr != nil {
		t.Skipf("tmux is not installed and could not be installed (apt-get install tmux: %v)\n%s", err, out)
	}
}

func newTmux(t *testing.T, dir string, width, height int) *tmuxSession {
	t.Helper()
	needTmux(t)
	s := &tmuxSession{t: t, socket: fmt.Sprintf("strata-progress-%d-%d", os.Getpid(), width)}
	// A plain sh with a short prompt keeps the typed command on one line even at 40 columns.
	s.tmux("new-session", "-d", "-x", strconv.Itoa(width), "-y", strconv.Itoa(height), "-c", dir,
		"env", "PS1=$ ", "TERM=xterm", "sh")
	t.Cleanup(func() { exec.Command("tmux", "-L", s.socket, "kill-server").Run() })
	return s
}

func (s *tmuxSession) tmux(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", s.socket}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (s *tmuxSession) send(line string) { s.tmux("send-keys", line, "Enter") }

// screen is what a person sees: the visible pane, wrapped rows joined back into the lines that
// were written, so a line the terminal wrapped shows up as longer than the pane.
func (s *tmuxSession) screen() string { return s.tmux("capture-pane", "-p", "-J") }

// waitFor polls the pane until ok accepts it.
func (s *tmuxSession) waitFor(what string, timeout time.Duration, ok func(string) bool) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var scr string
	for time.Now().Before(deadline) {
		if scr = s.screen(); ok(scr) {
			return scr
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("timed out waiting for %s; the screen:\n%s", what, scr)
	return ""
}

var timerAtEnd = regexp.MustCompile(`(\d+\.\d)s$`)

// stepLineOf returns the screen's line for the step whose text contains substr.
func stepLineOf(scr, substr string) string {
	for _, l := range strings.Split(scr, "\n") {
		if strings.HasPrefix(l, "=> ") && !strings.HasPrefix(l, "=> => ") && strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

func checkClean(t *testing.T, scr string) {
	t.Helper()
	for _, garbage := range []string{"\x1b", "[1A", "[2A", "[J", "[K", "^["} {
		if strings.Contains(scr, garbage) {
			t.Errorf("escape garbage %q on screen:\n%s", garbage, scr)
		}
	}
	if n := strings.Count(scr, "[+] "); n != 1 {
		t.Errorf("%d headers on screen, want 1 (a frame was left behind):\n%s", n, scr)
	}
}

const ttyDockerfile = `FROM {{BASE}}
COPY a.txt /a.txt
RUN for i in 1 2 3 4 5 6 7 8 9; do echo "tick $i"; sleep 1; done
RUN echo after
`

func TestProgressTTYInTmux(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("tty", map[string]string{"Dockerfile": ttyDockerfile, "a.txt": "a\n"})
	script := filepath.Join(e.dir, "b.sh")
	writeScript(t, script, fmt.Sprintf("%s --root %s build --progress=tty %s; echo EXIT=$?\n", strataBin, e.root, ctx))
	s := newTmux(t, e.dir, 100, 30)
	s.send("sh b.sh")

	// At the start: the header with its clock.
	s.waitFor("the header", 60*time.Second, func(scr string) bool {
		return regexp.MustCompile(`(?m)^\[\+\] Building \d+\.\ds \(\d+/\d+\)$`).MatchString(scr)
	})

	// In the middle: the running RUN with its timer, why it runs and its last five lines.
	var newest int
	mid := s.waitFor("the RUN's output", 90*time.Second, func(scr string) bool {
		for i := 9; i >= 6; i-- {
			if strings.Contains(scr, fmt.Sprintf("=> => # tick %d\n", i)) {
				newest = i
				return !strings.Contains(scr, "EXIT=")
			}
		}
		return false
	})
	t.Logf("in the middle:\n%s", mid)
	run := stepLineOf(mid, "RUN for i in")
	m := timerAtEnd.FindStringSubmatch(run)
	if !strings.HasPrefix(run, "=> [3/4] RUN for i in 1 2 3") || m == nil {
		t.Errorf("running step line %q: want the step and its timer at the right edge\n%s", run, mid)
	}
	for i := newest - 4; i <= newest; i++ {
		if !strings.Contains(mid, fmt.Sprintf("=> => # tick %d\n", i)) {
			t.Errorf("tick %d missing from the last five lines:\n%s", i, mid)
		}
	}
	if strings.Contains(mid, fmt.Sprintf("tick %d\n", newest-5)) {
		t.Errorf("tick %d still shown: more than five lines of output:\n%s", newest-5, mid)
	}
	if !strings.Contains(mid, "=> => miss: ") {
		t.Errorf("the running step does not say why it runs:\n%s", mid)
	}
	if !strings.Contains(mid, "=> CACHED [1/4] FROM") && !strings.Contains(mid, "=> [1/4] FROM") {
		t.Errorf("the finished FROM is not one line:\n%s", mid)
	}
	checkClean(t, mid)
	// The timer runs: a later frame shows more time.
	if m != nil {
		before, _ := strconv.ParseFloat(m[1], 64)
		s.waitFor("the timer to advance", 10*time.Second, func(scr string) bool {
			mm := timerAtEnd.FindStringSubmatch(stepLineOf(scr, "RUN for i in"))
			if mm == nil {
				return strings.Contains(scr, "EXIT=")
			}
			after, _ := strconv.ParseFloat(mm[1], 64)
			return after >= before+0.5
		})
	}

	// At the end: one line per step, no output lines, the header says FINISHED, nothing else.
	end := s.waitFor("the build to end", 90*time.Second, func(scr string) bool { return strings.Contains(scr, "EXIT=") })
	if !strings.Contains(end, "EXIT=0") {
		t.Fatalf("build failed:\n%s", end)
	}
	if !regexp.MustCompile(`(?m)^\[\+\] Building \d+\.\ds \(\d+/\d+\) FINISHED$`).MatchString(end) {
		t.Errorf("no FINISHED header:\n%s", end)
	}
	for _, step := range []string{"[1/4] FROM", "[2/4] COPY a.txt", "[3/4] RUN for i in", "[4/4] RUN echo after", "exporting to image"} {
		l := stepLineOf(end, step)
		if l == "" || !timerAtEnd.MatchString(l) {
			t.Errorf("step %q: line %q, want one line with its time:\n%s", step, l, end)
		}
	}
	if strings.Contains(end, "=> => ") || regexp.MustCompile(`(?m)^tick`).MatchString(end) {
		t.Errorf("finished steps did not collapse:\n%s", end)
	}
	checkClean(t, end)

	// A failing step: its last lines and the error stay on screen.
	fail := e.project("ttyfail", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nRUN echo first words; echo last words; exit 3\n",
	})
	writeScript(t, script, fmt.Sprintf("clear; %s --root %s build --progress=tty %s; echo EXIT=$?\n", strataBin, e.root, fail))
	s.send("sh b.sh")
	end = s.waitFor("the failed build to end", 90*time.Second, func(scr string) bool { return strings.Contains(scr, "EXIT=1") })
	t.Logf("after a failure:\n%s", end)
	for _, want := range []string{"FAILED", "=> ERROR [2/2] RUN echo first words", "=> => # first words", "=> => # last words", "ERROR: Dockerfile:2:", "exit code: 3"} {
		if !strings.Contains(end, want) {
			t.Errorf("%q not on screen after the failure:\n%s", want, end)
		}
	}
	checkClean(t, end)
	// Ctrl-C: the last frame says so, and the step that was running is marked.
	stuck := e.project("ttycancel", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nRUN echo waiting; sleep 60\n",
	})
	writeScript(t, script, fmt.Sprintf("clear; %s --root %s build --progress=tty %s; echo EXIT=$?\n", strataBin, e.root, stuck))
	s.send("sh b.sh")
	s.waitFor("the step to start", 60*time.Second, func(scr string) bool { return strings.Contains(scr, "=> => # waiting") })
	s.tmux("send-keys", "C-c")
	// The script's shell dies of the same Ctrl-C: wait for the prompt instead of EXIT=.
	end = s.waitFor("the cancelled build to end", 60*time.Second, func(scr string) bool {
		return strings.HasSuffix(strings.TrimRight(scr, "\n "), "\n$") && strings.Contains(scr, "ERROR:")
	})
	t.Logf("after Ctrl-C:\n%s", end)
	if !regexp.MustCompile(`(?m)^\[\+\] Building \d+\.\ds \(\d+/\d+\) (CANCELED|FAILED)$`).MatchString(end) || !strings.Contains(end, "RUN echo waiting; sleep 60") {
		t.Errorf("no last frame after Ctrl-C:\n%s", end)
	}
	checkClean(t, end)
}

// At 40 columns long lines are cut, never wrapped: joined back, no line is wider than the pane.
func TestProgressTTYNarrowTmux(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("narrow", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nRUN echo a-long-line-of-output-that-is-much-wider-than-forty-columns; sleep 3; echo done-now\n",
	})
	writeScript(t, filepath.Join(e.dir, "b.sh"), fmt.Sprintf("%s --root %s build --progress=tty %s; echo EXIT=$?\n", strataBin, e.root, ctx))
	s := newTmux(t, e.dir, 40, 30)
	s.send("sh b.sh")
	check := func(scr string) {
		t.Helper()
		for _, l := range strings.Split(scr, "\n") {
			if len([]rune(l)) >= 40 {
				t.Errorf("line of %d columns (wrapped or touching the edge): %q\n%s", len([]rune(l)), l, scr)
			}
		}
	}
	mid := s.waitFor("the RUN's output", 60*time.Second, func(scr string) bool {
		return strings.Contains(scr, "=> => # a-long-line") || strings.Contains(scr, "EXIT=")
	})
	t.Logf("in the middle at 40 columns:\n%s", mid)
	check(mid)
	if l := stepLineOf(mid, "RUN echo"); !strings.HasPrefix(l, "=> [2/2] RUN echo a-long") || !timerAtEnd.MatchString(l) {
		t.Errorf("running step at 40 columns: %q\n%s", l, mid)
	}
	// Narrower still while it runs: the frames that follow fit the new width and replace the
	// old ones, which the terminal has rewrapped, without leaving pieces behind.
	s.tmux("resize-window", "-x", "30")
	end := s.waitFor("the build to end", 60*time.Second, func(scr string) bool { return strings.Contains(scr, "EXIT=") })
	if !strings.Contains(end, "EXIT=0") {
		t.Fatalf("build failed:\n%s", end)
	}
	t.Logf("at the end, resized to 30 columns:\n%s", end)
	if !regexp.MustCompile(`(?m)^\[\+\] \d+\.\ds \(\d+/\d+\) FINISHED$`).MatchString(end) {
		t.Errorf("at 30 columns the header should give up the word Building, not the outcome:\n%s", end)
	}
	for _, l := range strings.Split(end, "\n") {
		if len([]rune(l)) >= 30 && !strings.HasPrefix(l, "$ ") {
			t.Errorf("line of %d columns after the resize: %q\n%s", len([]rune(l)), l, end)
		}
	}
	checkClean(t, end)
	if l := stepLineOf(end, "RUN echo"); !timerAtEnd.MatchString(l) {
		t.Errorf("finished step at 40 columns: %q\n%s", l, end)
	}
}

func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}
