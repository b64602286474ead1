package history

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/strata-build/strata/internal/store"
)

// jsonBuild is a record as --format json prints it: the record plus the summary the table shows.
type jsonBuild struct {
	*Record
	Hits  int           `json:"hits"`
	Total int           `json:"total"`
	Saved time.Duration `json:"saved"`
}

func toJSON(r *Record) jsonBuild {
	return jsonBuild{Record: r, Hits: r.Hits(), Total: len(r.Steps), Saved: r.Saved()}
}

// WriteList prints builds as `strata history` shows them: a table, or JSON with --format json.
func WriteList(w io.Writer, format string, recs []*Record) error {
	switch format {
	case "json":
		out := make([]jsonBuild, 0, len(recs))
		for _, r := range recs {
			out = append(out, toJSON(r))
		}
		return writeJSON(w, out)
	case "table", "":
	default:
		return fmt.Errorf("--format %s: use table or json", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tDATE\tTARGET\tDURATION\tCACHED\tSAVED\tOUTCOME")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.ID, r.Start.Local().Format(time.DateTime),
			orDash(r.Target), fmtDur(r.Duration), r.Hits(), len(r.Steps), fmtDur(r.Saved()), r.Outcome)
	}
	return tw.Flush()
}

// WriteBuild prints one build with its steps as `strata history inspect` shows it.
func WriteBuild(w io.Writer, format string, r *Record) error {
	switch format {
	case "json":
		return writeJSON(w, toJSON(r))
	case "table", "":
	default:
		return fmt.Errorf("--format %s: use table or json", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	outcome := r.Outcome
	if r.Error != "" {
		outcome += ": " + r.Error
	}
	fmt.Fprintf(tw, "ID:\t%s\n", r.ID)
	fmt.Fprintf(tw, "Started:\t%s\n", r.Start.Local().Format(time.DateTime+" MST"))
	fmt.Fprintf(tw, "Duration:\t%s\n", fmtDur(r.Duration))
	fmt.Fprintf(tw, "Outcome:\t%s\n", outcome)
	fmt.Fprintf(tw, "Dockerfile:\t%s (%s)\n", r.Dockerfile, shortDigest(r.DockerfileDigest))
	fmt.Fprintf(tw, "Context:\t%s\n", r.Context)
	fmt.Fprintf(tw, "Target:\t%s\n", orDash(r.Target))
	if len(r.BuildArgs) > 0 {
		var args []string
		for _, k := range slices.Sorted(maps.Keys(r.BuildArgs)) {
			args = append(args, k+"="+r.BuildArgs[k])
		}
		fmt.Fprintf(tw, "Build args:\t%s\n", strings.Join(args, " "))
	}
	if len(r.Tags) > 0 {
		fmt.Fprintf(tw, "Tags:\t%s\n", strings.Join(r.Tags, " "))
	}
	if r.Image != "" {
		fmt.Fprintf(tw, "Image:\t%s\n", r.Image)
	}
	fmt.Fprintf(tw, "Cached:\t%d of %d steps, %s saved\n", r.Hits(), len(r.Steps), fmtDur(r.Saved()))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Steps) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tRESULT\tTIME\tLAST RUN\tSIZE\tKEY\tWHY")
	for _, s := range r.Steps {
		result := strings.ToUpper(s.Result)
		switch {
		case s.Result == ResultHit && s.Remote:
			result = "CACHED (remote)"
		case s.Result == ResultHit:
			result = "CACHED"
		case s.Result == ResultMiss:
			result = "RAN"
		}
		lastRun := "-"
		if s.Result == ResultHit || s.Result == ResultMiss {
			lastRun = fmtDur(s.LastCost)
		}
		key := "-"
		if len(s.Key) >= 12 {
			key = s.Key[:12]
		}
		fmt.Fprintf(tw, "[%s %d] %s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Stage, s.Pos, clip(oneLine(s.Text), 48), result,
			fmtDur(s.Duration), lastRun, store.FormatSize(s.Size), key, orDash(s.Reason))
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
