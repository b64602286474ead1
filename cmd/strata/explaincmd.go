package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/history"
)

func newExplainCmd(g *globalOpts) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "explain [ID | ID1 ID2]",
		Short: "Say why a build ran the steps it ran, against the build before it",
		Long: `Compare a build (default: the last one) with the previous build of the same Dockerfile and
target, or build ID2 with build ID1: the changes between the two builds (Dockerfile, build args,
base images), then for each step that ran the input that changed (files, a build arg old → new,
a base image digest, the instruction, a cache mount, secret or ssh id, --no-cache), with the steps that
re-ran only because an earlier one did folded into one line per cause. IDs may be any unique
prefix. --format json prints the same (docs/HISTORY.md).`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %s: use table or json", format)
			}
			root, err := historyRoot(g)
			if err != nil {
				return err
			}
			ref := "latest"
			if len(args) > 0 {
				ref = args[len(args)-1]
			}
			cur, skipped, err := history.Find(root, ref)
			noteSkipped(cmd.ErrOrStderr(), skipped)
			if err != nil {
				return err
			}
			var prev *history.Record
			if len(args) == 2 {
				prev, skipped, err = history.Find(root, args[0])
			} else {
				prev, skipped, err = history.Previous(root, cur)
			}
			noteSkipped(cmd.ErrOrStderr(), skipped)
			if err != nil {
				return err
			}
			e := history.Explain(prev, cur)
			if format == "json" {
				return writeJSONOut(cmd.OutOrStdout(), e)
			}
			return e.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}
