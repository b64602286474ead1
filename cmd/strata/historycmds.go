package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/history"
	"github.com/strata-build/strata/internal/store"
)

func newHistoryCmd(g *globalOpts) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the builds this store ran, newest first",
		Long: `List the builds this store ran, newest first: when, the target, how long it took, how many
steps the cache served, the time the cache saved (what those steps cost when they last ran) and
the outcome. Failed and cancelled builds are listed too.

Every strata build leaves a record; the store keeps the last 100 (--history-keep on strata build,
or "history-keep" in the config file). --format json prints the records (docs/HISTORY.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, err := historyRoot(g)
			if err != nil {
				return err
			}
			recs, skipped, err := history.List(root)
			if err != nil {
				return err
			}
			noteSkipped(cmd.ErrOrStderr(), skipped)
			return printHistory(cmd.OutOrStdout(), format, recs)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.AddCommand(newHistoryInspectCmd(g), newHistoryRmCmd(g), newHistoryPruneCmd(g))
	return cmd
}

func newHistoryInspectCmd(g *globalOpts) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [ID|latest]",
		Short: "Show one build with its steps (default: the last build)",
		Long: `Show one build: what was built from what, its outcome, and per step whether the cache served
it (locally or from an imported cache) or why it ran, how long it took, what it cost when it
last ran and the size of its layer. ID may be any unique prefix; latest (or nothing) is the
last build.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			root, err := historyRoot(g)
			if err != nil {
				return err
			}
			ref := "latest"
			if len(args) == 1 {
				ref = args[0]
			}
			r, skipped, err := history.Find(root, ref)
			noteSkipped(cmd.ErrOrStderr(), skipped)
			if err != nil {
				return err
			}
			return printBuild(cmd.OutOrStdout(), format, r)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func newHistoryRmCmd(g *globalOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID...",
		Short: "Remove builds from the history",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			root, err := historyRoot(g)
			if err != nil {
				return err
			}
			removed, err := history.Remove(root, args...)
			for _, id := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "Removed %s\n", id)
			}
			return err
		},
	}
}

func newHistoryPruneCmd(g *globalOpts) *cobra.Command {
	var keep int
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove all builds from the history but the --keep newest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keep < 0 {
				return fmt.Errorf("--keep %d: want 0 or more", keep)
			}
			root, err := historyRoot(g)
			if err != nil {
				return err
			}
			n, err := history.Prune(root, keep)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed %d %s\n", n, plural(n, "build", "builds"))
			return nil
		},
	}
	cmd.Flags().IntVar(&keep, "keep", 0, "keep the N newest builds")
	return cmd
}

// historyRoot is the store root. The history is read and pruned without the store lock: each
// record is one file that appears whole, removing one twice is harmless, and GC never touches
// them, so waiting for a running prune would buy nothing.
func historyRoot(g *globalOpts) (string, error) {
	root := g.root
	if root == "" {
		root = store.DefaultRoot()
	}
	return filepath.Abs(root)
}

func noteSkipped(w io.Writer, skipped []string) {
	for _, s := range skipped {
		fmt.Fprintf(w, "note: %s\n", s)
	}
}

// historyKeep is what the build passes as build.Options.HistoryKeep: --history-keep when given,
// else the config file's "history-keep", else the default. 0 builds means none (-1 for the
// library, whose 0 is the default).
func historyKeep(cmd *cobra.Command, flag int) (int, error) {
	n := flag
	if !cmd.Flags().Changed("history-keep") {
		c, err := loadHistoryConfig()
		if err != nil {
			return 0, err
		}
		if c.HistoryKeep == nil {
			return history.DefaultKeep, nil
		}
		n = *c.HistoryKeep
	}
	switch {
	case n < 0:
		return 0, fmt.Errorf("history-keep %d: want 0 or more builds", n)
	case n == 0:
		return -1, nil
	}
	return n, nil
}

// historyConfig is the history's part of the config file (see strataConfig).
type historyConfig struct {
	HistoryKeep *int `json:"history-keep"`
}

func loadHistoryConfig() (historyConfig, error) {
	var c historyConfig
	data, err := os.ReadFile(configPath())
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("%s: history-keep: %w", configPath(), err)
	}
	return c, nil
}

// jsonBuild is a record as --format json prints it: the record plus the summary the table shows.
type jsonBuild struct {
	*history.Record
	Hits  int           `json:"hits"`
	Total int           `json:"total"`
	Saved time.Duration `json:"saved"`
}

func toJSON(r *history.Record) jsonBuild {
	return jsonBuild{Record: r, Hits: r.Hits(), Total: len(r.Steps), Saved: r.Saved()}
}

func printHistory(w io.Writer, format string, recs []*history.Record) error {
	switch format {
	case "json":
		out := make([]jsonBuild, 0, len(recs))
		for _, r := range recs {
			out = append(out, toJSON(r))
		}
		return writeJSONOut(w, out)
	case "table", "":
	default:
		return fmt.Errorf("--format %s: use table or json", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tDATE\tTARGET\tDURATION\tCACHED\tSAVED\tOUTCOME")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.ID, r.Start.Local().Format(time.DateTime),
			orDash(r.Target), fmtDuration(r.Duration), r.Hits(), len(r.Steps), fmtDuration(r.Saved()), r.Outcome)
	}
	return tw.Flush()
}

func printBuild(w io.Writer, format string, r *history.Record) error {
	switch format {
	case "json":
		return writeJSONOut(w, toJSON(r))
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
	fmt.Fprintf(tw, "Duration:\t%s\n", fmtDuration(r.Duration))
	fmt.Fprintf(tw, "Outcome:\t%s\n", outcome)
	fmt.Fprintf(tw, "Dockerfile:\t%s (%s)\n", r.Dockerfile, shortDigest(r.DockerfileDigest))
	fmt.Fprintf(tw, "Context:\t%s\n", r.Context)
	fmt.Fprintf(tw, "Target:\t%s\n", orDash(r.Target))
	if len(r.BuildArgs) > 0 {
		var args []string
		for _, k := range sortedKeys(r.BuildArgs) {
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
	fmt.Fprintf(tw, "Cached:\t%d of %d steps, %s saved\n", r.Hits(), len(r.Steps), fmtDuration(r.Saved()))
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
		case s.Result == history.ResultHit && s.Remote:
			result = "CACHED (remote)"
		case s.Result == history.ResultHit:
			result = "CACHED"
		case s.Result == history.ResultMiss:
			result = "RAN"
		}
		lastRun := "-"
		if s.Result == history.ResultHit || s.Result == history.ResultMiss {
			lastRun = fmtDuration(s.LastCost)
		}
		key := "-"
		if len(s.Key) >= 12 {
			key = s.Key[:12]
		}
		fmt.Fprintf(tw, "[%s %d] %s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Stage, s.Pos, clip(oneLine(s.Text), 48), result,
			fmtDuration(s.Duration), lastRun, humanSize(s.Size), key, orDash(s.Reason))
	}
	return tw.Flush()
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fmtDuration prints durations as BuildKit's progress does (12.3s), minutes past a minute.
func fmtDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	if d < time.Hour {
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s, _, cut := strings.Cut(s, "\n")
	if cut {
		s += " …"
	}
	return s
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
