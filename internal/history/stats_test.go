package history

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func timed(s Step, d, last time.Duration) Step {
	s.Duration, s.LastCost = d, last
	return s
}

// Three builds of one Dockerfile over two days, an edit in the second: per-position hit rates,
// the step that cost the most running first, the re-run time only from "parent step changed",
// and the per-day arithmetic over the two days.
func TestStats(t *testing.T) {
	first := rec("b1", 0, nil,
		timed(miss("stage-0", 2, 2, "RUN apt-get install", "a", "no earlier build of this step"), 60*time.Second, 60*time.Second),
		timed(miss("stage-0", 3, 3, "COPY . .", "b", "no earlier build of this step"), time.Second, time.Second),
		timed(miss("stage-0", 4, 4, "RUN make", "c", "no earlier build of this step"), 30*time.Second, 30*time.Second))
	edit := rec("b2", 0, nil,
		timed(hit("stage-0", 2, 2, "RUN apt-get install", "a"), 0, 60*time.Second),
		timed(miss("stage-0", 3, 3, "COPY . .", "b2", "main.c changed"), 2*time.Second, 2*time.Second),
		timed(miss("stage-0", 4, 4, "RUN make", "c2", parentChanged), 20*time.Second, 20*time.Second))
	edit.Start = first.Start.Add(24 * time.Hour)
	failed := rec("b3", 0, nil,
		timed(hit("stage-0", 2, 2, "RUN apt-get install", "a"), 0, 60*time.Second),
		timed(hit("stage-0", 3, 3, "COPY . .", "b2"), 0, 2*time.Second),
		timed(hit("stage-0", 4, 4, "RUN make", "c2"), 0, 20*time.Second),
		Step{Stage: "stage-0", Pos: 5, Line: 5, Text: "RUN false", Result: ResultFailed, Duration: time.Second})
	failed.Start, failed.Outcome = first.Start.Add(36*time.Hour), OutcomeFailed
	other := rec("o1", 0, nil, timed(miss("stage-0", 2, 2, "RUN apt-get install", "x", parentChanged), time.Hour, time.Hour))
	other.Dockerfile = "/other/Dockerfile"
	other.Start = first.Start.Add(-30 * 24 * time.Hour)
	now := first.Start.Add(48 * time.Hour)

	st := ComputeStats([]*Record{failed, edit, first, other}, 7*24*time.Hour, now)
	if st.Builds != 3 || st.Outcomes[OutcomeOK] != 2 || st.Outcomes[OutcomeFailed] != 1 || len(st.Outcomes) != 2 {
		t.Fatalf("builds %d outcomes %v, want 3 (2 ok, 1 failed): the build before the window is out", st.Builds, st.Outcomes)
	}
	if st.Hits != 4 || st.Total != 10 || st.Saved != 60*time.Second+82*time.Second {
		t.Errorf("hits %d/%d saved %v", st.Hits, st.Total, st.Saved)
	}
	if st.Rerun != 20*time.Second || st.RerunSteps != 1 {
		t.Errorf("rerun %v in %d steps, want 20s in 1 (RUN make after the COPY edit)", st.Rerun, st.RerunSteps)
	}
	if st.Days != 2 || st.BuildsPerDay != 1.5 || st.RerunPerDay != 10*time.Second || st.RerunPerYear != 3650*time.Second {
		t.Errorf("days %v rate %v perDay %v perYear %v", st.Days, st.BuildsPerDay, st.RerunPerDay, st.RerunPerYear)
	}
	var order []string
	for _, s := range st.Steps {
		order = append(order, s.Text)
	}
	if got, want := strings.Join(order, ", "), "RUN apt-get install, RUN make, COPY . ., RUN false"; got != want {
		t.Fatalf("steps by time running: %s, want %s", got, want)
	}
	mk, cp := st.Steps[1], st.Steps[2]
	if mk.Builds != 3 || mk.Hits != 1 || mk.Ran != 2 || mk.RanTime != 50*time.Second || mk.Reruns != 1 || mk.RerunTime != 20*time.Second {
		t.Errorf("RUN make: %+v", mk)
	}
	if cp.Hits != 1 || cp.Builds != 3 || cp.Ran != 2 || cp.HitRate != 1.0/3 || cp.Saved != 2*time.Second {
		t.Errorf("COPY: %+v", cp)
	}

	var buf bytes.Buffer
	if err := st.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("stats:\n%s", out)
	for _, want := range []string{
		"3 (2 ok, 1 failed), last 7d",
		"1.5 builds a day (over 2.0 days)",
		"4 of 10 steps (40%), 2m22s saved",
		"20.0s in 1 step: 6.7s a build",
		"10.0s a day, 1h00m a year at this rate",
		`"parent step changed"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stats text lacks %q", want)
		}
	}
	copyLine := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "COPY . .") {
			copyLine = strings.Join(strings.Fields(l), " ")
		}
	}
	if want := "[stage-0 3] COPY . . 1/3 33% 2 3.0s 0, 0.0s 2.0s"; copyLine != want {
		t.Errorf("COPY line %q, want %q", copyLine, want)
	}
	if strings.Contains(out, "DOCKERFILE") {
		t.Errorf("one Dockerfile, yet a DOCKERFILE column:\n%s", out)
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatal(err)
	}

	// All history: the other Dockerfile's step is its own position, and the table names files.
	all := ComputeStats([]*Record{failed, edit, first, other}, 0, now)
	if all.Builds != 4 || len(all.Steps) != 5 || all.Steps[0].Dockerfile != "/other/Dockerfile" || all.Days != 32 {
		t.Fatalf("all history: %d builds, steps %+v, %v days", all.Builds, all.Steps, all.Days)
	}
	buf.Reset()
	all.WriteText(&buf)
	if !strings.Contains(buf.String(), "DOCKERFILE") || !strings.Contains(buf.String(), "all history") {
		t.Errorf("all history text:\n%s", buf.String())
	}
}

// Many positions: the text lists the top ones and says how many more there are.
func TestStatsTopAndEmpty(t *testing.T) {
	r := rec("b1", 0, nil, tenSteps()...)
	r.Steps = append(r.Steps, miss("stage-0", 12, 12, "RUN more", "m", "no earlier build of this step"))
	st := ComputeStats([]*Record{r}, 0, r.Start.Add(time.Minute))
	if st.Days != 1 {
		t.Errorf("days %v: a build a minute ago counts over one day", st.Days)
	}
	var buf bytes.Buffer
	st.WriteText(&buf)
	if n := strings.Count(buf.String(), "[stage-0 "); n != StatsTop || !strings.Contains(buf.String(), "… 1 more step ") {
		t.Errorf("%d step lines, want %d and one more:\n%s", n, StatsTop, buf.String())
	}

	buf.Reset()
	ComputeStats(nil, time.Hour, time.Now()).WriteText(&buf)
	if got := buf.String(); got != "No builds recorded (last 1h0m0s).\n" {
		t.Errorf("empty stats: %q", got)
	}
}

func TestParseSince(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "1d12h": 36 * time.Hour, "1.5d": 36 * time.Hour, "90m": 90 * time.Minute,
	} {
		if got, err := ParseSince(in); err != nil || got != want {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "7", "d", "-1d", "0d", "7days", "1w"} {
		if d, err := ParseSince(in); err == nil {
			t.Errorf("ParseSince(%q) = %v, want an error", in, d)
		}
	}
}
