package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/history"
)

func newStatsCmd(g *globalOpts) *cobra.Command {
	var format, since string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Sum up the build history: hit rates, costly misses, time saved and lost",
		Long: `Sum up the builds in the history (all of it, or those started within --since): builds by
outcome, the hit rate of each step position (stage, position and instruction, per Dockerfile and
target), the steps that spent the most time running and how often they ran, the time the cache
saved, and the time spent re-running unchanged work (steps that ran only because an earlier
step of their stage changed) per day and per year at the observed build rate. --since takes Go
durations and days (7d, 36h, 1d12h). --format json prints all steps (docs/HISTORY.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %s: use table or json", format)
			}
			var window time.Duration
			if since != "" {
				var err error
				if window, err = history.ParseSince(since); err != nil {
					return err
				}
			}
			root, err := historyRoot(g)
			if err != nil {
				return err
			}
			recs, skipped, err := history.List(root)
			if err != nil {
				return err
			}
			noteSkipped(cmd.ErrOrStderr(), skipped)
			st := history.ComputeStats(recs, window, time.Now())
			if format == "json" {
				return writeJSONOut(cmd.OutOrStdout(), st)
			}
			return st.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only builds started within this long (7d, 36h; default all history)")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}
