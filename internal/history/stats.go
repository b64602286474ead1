package history

import (
	"cmp"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// parentChanged is the miss reason the solver records for a step it did not compare further
// because the filesystem it starts from changed: the step re-ran only because an earlier one did.
const parentChanged = "parent step changed"

// StatsTop is how many steps the text form of the stats lists, so it fits on one screen.
const StatsTop = 10

// Stats sums up the builds of a window of the history. The JSON form is documented in
// docs/HISTORY.md.
type Stats struct {
	Since    time.Duration  `json:"since"` // the --since window, 0 for all history
	From     time.Time      `json:"from"`  // start of the oldest build counted (zero when none)
	To       time.Time      `json:"to"`    // when the stats were taken
	Days     float64        `json:"days"`  // From to To in days, at least 1 (the rate's denominator)
	Builds   int            `json:"builds"`
	Outcomes map[string]int `json:"outcomes"` // outcome → builds
	Hits     int            `json:"hits"`     // steps served from the cache
	Total    int            `json:"total"`    // steps recorded
	Saved    time.Duration  `json:"saved"`    // sum of lastCost of the hits
	// Rerun is the unchanged work: the run time of the steps that missed only because an earlier
	// step of their stage changed (reason "parent step changed").
	Rerun        time.Duration `json:"rerun"`
	RerunSteps   int           `json:"rerunSteps"`
	BuildsPerDay float64       `json:"buildsPerDay"`
	RerunPerDay  time.Duration `json:"rerunPerDay"`
	RerunPerYear time.Duration `json:"rerunPerYear"`
	// Steps are all step positions seen, the ones that spent the most time running first.
	Steps []StepStats `json:"steps"`
}

// StepStats is one step position (stage, position and instruction text) of one Dockerfile path
// and target, across the builds that recorded it.
type StepStats struct {
	Dockerfile string        `json:"dockerfile"`
	Target     string        `json:"target"`
	Stage      string        `json:"stage"`
	Pos        int           `json:"pos"`
	Line       int           `json:"line,omitempty"` // as the newest build recorded it
	Text       string        `json:"text"`
	Builds     int           `json:"builds"`  // builds that recorded the step
	Hits       int           `json:"hits"`    // of those, served from the cache
	HitRate    float64       `json:"hitRate"` // hits / builds
	Ran        int           `json:"ran"`     // missed, failed or cancelled
	RanTime    time.Duration `json:"ranTime"` // time spent running it, all runs
	Saved      time.Duration `json:"saved"`   // sum of lastCost of its hits
	Reruns     int           `json:"reruns"`  // runs with reason "parent step changed"
	RerunTime  time.Duration `json:"rerunTime"`
	newest     time.Time     // the build Line is from: where the step is in the Dockerfile now
}

type stepPos struct {
	dockerfile, target, stage string
	pos                       int
	text                      string
}

// ComputeStats sums up recs (in any order) started within since before now (since ≤ 0: all of
// them). The rate divides by the days from the oldest build counted to now, at least one, so a
// few builds minutes apart do not extrapolate to thousands a day.
func ComputeStats(recs []*Record, since time.Duration, now time.Time) *Stats {
	st := &Stats{Since: since, To: now, Outcomes: map[string]int{}, Steps: []StepStats{}}
	at := map[stepPos]*StepStats{}
	for _, r := range recs {
		if since > 0 && r.Start.Before(now.Add(-since)) {
			continue
		}
		st.Builds++
		st.Outcomes[r.Outcome]++
		if st.From.IsZero() || r.Start.Before(st.From) {
			st.From = r.Start
		}
		st.Hits += r.Hits()
		st.Total += len(r.Steps)
		st.Saved += r.Saved()
		for _, s := range r.Steps {
			k := stepPos{r.Dockerfile, r.Target, s.Stage, s.Pos, s.Text}
			p := at[k]
			if p == nil {
				p = &StepStats{Dockerfile: r.Dockerfile, Target: r.Target, Stage: s.Stage, Pos: s.Pos, Text: s.Text}
				at[k] = p
			}
			if r.Start.After(p.newest) {
				p.newest, p.Line = r.Start, s.Line
			}
			p.Builds++
			switch s.Result {
			case ResultHit:
				p.Hits++
				p.Saved += s.LastCost
			default:
				p.Ran++
				p.RanTime += s.Duration
				if s.Result == ResultMiss && s.Reason == parentChanged {
					p.Reruns++
					p.RerunTime += s.Duration
					st.Rerun += s.Duration
					st.RerunSteps++
				}
			}
		}
	}
	for _, p := range at {
		p.HitRate = float64(p.Hits) / float64(p.Builds)
		st.Steps = append(st.Steps, *p)
	}
	slices.SortFunc(st.Steps, func(a, b StepStats) int {
		return cmp.Or(cmp.Compare(b.RanTime, a.RanTime), cmp.Compare(b.Ran, a.Ran),
			strings.Compare(a.Dockerfile, b.Dockerfile), strings.Compare(a.Target, b.Target),
			strings.Compare(a.Stage, b.Stage), cmp.Compare(a.Pos, b.Pos), strings.Compare(a.Text, b.Text))
	})
	st.Days = 1
	if !st.From.IsZero() {
		st.Days = max(1, now.Sub(st.From).Hours()/24)
	}
	st.BuildsPerDay = float64(st.Builds) / st.Days
	st.RerunPerDay = time.Duration(float64(st.Rerun) / st.Days)
	st.RerunPerYear = st.RerunPerDay * 365
	return st
}

var dayUnit = regexp.MustCompile(`(\d+(?:\.\d*)?|\.\d+)d`)

// ParseSince reads a --since window: a Go duration ("36h", "90m") that may also count days
// ("7d", "1d12h"), which time.ParseDuration does not, since history windows are usually days.
func ParseSince(s string) (time.Duration, error) {
	var bad error
	g := dayUnit.ReplaceAllStringFunc(s, func(m string) string {
		n, err := strconv.ParseFloat(strings.TrimSuffix(m, "d"), 64)
		if err != nil {
			bad = err
		}
		return strconv.FormatFloat(n*24, 'f', -1, 64) + "h"
	})
	d, err := time.ParseDuration(g)
	if bad != nil || err != nil || d <= 0 {
		return 0, fmt.Errorf("--since %q: want a positive duration such as 7d, 36h or 1d12h", s)
	}
	return d, nil
}

// WriteText prints the stats on one screen: the totals, the rate arithmetic, and the StatsTop
// steps that spent the most time running.
func (st *Stats) WriteText(w io.Writer) error {
	window := "all history"
	if st.Since > 0 {
		window = "last " + fmtDays(st.Since)
	}
	if st.Builds == 0 {
		_, err := fmt.Fprintf(w, "No builds recorded (%s).\n", window)
		return err
	}
	var outcomes []string
	for _, o := range []string{OutcomeOK, OutcomeFailed, OutcomeCancelled} {
		if n := st.Outcomes[o]; n > 0 {
			outcomes = append(outcomes, fmt.Sprintf("%d %s", n, o))
		}
	}
	for _, o := range sortedOutcomes(st.Outcomes) {
		outcomes = append(outcomes, fmt.Sprintf("%d %s", st.Outcomes[o], o))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Builds:\t%d (%s), %s, the oldest %s\n", st.Builds, strings.Join(outcomes, ", "), window,
		st.From.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "Rate:\t%.1f builds a day (over %.1f %s)\n", st.BuildsPerDay, st.Days, pluralS(st.Days, "day", "days"))
	fmt.Fprintf(tw, "Cached:\t%d of %d steps (%s), %s saved by the cache\n", st.Hits, st.Total, pct(st.Hits, st.Total), fmtDur(st.Saved))
	fmt.Fprintf(tw, "Re-run*:\t%s in %d %s: %s a build\n", fmtDur(st.Rerun), st.RerunSteps, pluralS(float64(st.RerunSteps), "step", "steps"),
		fmtDur(time.Duration(float64(st.Rerun)/float64(st.Builds))))
	fmt.Fprintf(tw, "Lost*:\t%s a day, %s a year at this rate\n", fmtDur(st.RerunPerDay), fmtDur(st.RerunPerYear))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Steps) > 0 {
		fmt.Fprintln(w)
		files := map[string]bool{}
		for _, s := range st.Steps {
			files[s.Dockerfile+"\x00"+s.Target] = true
		}
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		head := "STEP\tHIT RATE\tRAN\tTIME RUNNING\tRE-RUN*\tSAVED"
		if len(files) > 1 {
			head += "\tDOCKERFILE"
		}
		fmt.Fprintln(tw, head)
		for _, s := range st.Steps[:min(StatsTop, len(st.Steps))] {
			fmt.Fprintf(tw, "[%s %d] %s\t%d/%d %s\t%d\t%s\t%d, %s\t%s", s.Stage, s.Pos, clip(oneLine(s.Text), 40),
				s.Hits, s.Builds, pct(s.Hits, s.Builds), s.Ran, fmtDur(s.RanTime), s.Reruns, fmtDur(s.RerunTime), fmtDur(s.Saved))
			if len(files) > 1 {
				fmt.Fprintf(tw, "\t%s", clip(s.Dockerfile, 40))
				if s.Target != "" {
					fmt.Fprintf(tw, " (%s)", s.Target)
				}
			}
			fmt.Fprintln(tw)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if n := len(st.Steps) - StatsTop; n > 0 {
			fmt.Fprintf(w, "… %d more %s (--format json lists all)\n", n, pluralS(float64(n), "step", "steps"))
		}
	}
	_, err := fmt.Fprintf(w, "\n* unchanged work: the run time of steps that ran only because an earlier step of their\n"+
		"  stage changed (recorded reason %q); per day: over the days from the\n"+
		"  oldest build counted to now (at least one); per year: that times 365.\n", parentChanged)
	return err
}

func sortedOutcomes(m map[string]int) []string {
	var out []string
	for o := range m {
		if o != OutcomeOK && o != OutcomeFailed && o != OutcomeCancelled {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}

func pct(n, of int) string {
	if of == 0 {
		return "-"
	}
	return strconv.Itoa((n*200+of)/(2*of)) + "%"
}

func pluralS(n float64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// fmtDays prints a --since window back in the unit people gave it, days when it is whole days.
func fmtDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

// fmtDur prints durations as history's table does (12.3s), minutes past a minute.
func fmtDur(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	if d < time.Hour {
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
