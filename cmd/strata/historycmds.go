package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

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
			return history.WriteList(cmd.OutOrStdout(), format, recs)
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
			return history.WriteBuild(cmd.OutOrStdout(), format, r)
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
			noun := "builds"
			if n == 1 {
				noun = "build"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed %d %s\n", n, noun)
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
		c, err := loadConfig()
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

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
