package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/solver"
	"github.com/strata-build/strata/internal/store"
)

type imageT = image.Image

func openStore(g *globalOpts, exclusive bool) (*store.Store, error) {
	root := g.root
	if root == "" {
		root = store.DefaultRoot()
	}
	return store.Open(root, exclusive)
}

func newImagesCmd(g *globalOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "images",
		Short: "List images in the local store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openStore(g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			tags, err := st.Tags()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDIGEST\tCREATED\tSIZE")
			for _, name := range sortedKeys(tags) {
				d := tags[name]
				created, size := imageInfo(st, d)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, d.Encoded()[:12], created, humanSize(size))
			}
			return tw.Flush()
		},
	}
}

func imageInfo(st *store.Store, d digest.Digest) (string, int64) {
	data, err := st.ReadBlob(d)
	if err != nil {
		return "?", 0
	}
	var m ocispec.Manifest
	if json.Unmarshal(data, &m) != nil {
		return "?", 0
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	created := "?"
	if cd, err := st.ReadBlob(m.Config.Digest); err == nil {
		var c ocispec.Image
		if json.Unmarshal(cd, &c) == nil && c.Created != nil {
			created = c.Created.Format(time.RFC3339)
		}
	}
	return created, size
}

func newRmiCmd(g *globalOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "rmi NAME...",
		Short: "Remove image tags from the local store (space is freed by prune)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openStore(g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			for _, a := range args {
				n, err := normalizeName(a)
				if err != nil {
					return err
				}
				if err := st.Untag(n); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Untagged: %s\n", n)
			}
			return nil
		},
	}
}

func newDuCmd(g *globalOpts) *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "du",
		Short: "Show disk usage of the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openStore(g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			u, err := st.Usage()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "KIND\tCOUNT\tSIZE")
			for _, k := range u {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", k.Kind, k.Count, humanSize(k.Size))
			}
			if verbose {
				recs, err := st.Records()
				if err != nil {
					return err
				}
				fmt.Fprintln(tw, "\nCACHE RECORD\tLAST USED\tSTEP")
				for _, r := range recs {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Key[:12], r.LastUsed.Format(time.RFC3339), r.Step)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list cache records")
	return cmd
}

func newPruneCmd(g *globalOpts) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove the build cache and everything no image tag uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openStore(g, true)
			if err != nil {
				return err
			}
			defer st.Close()
			freed, err := st.Prune(store.PruneOptions{All: all})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Total reclaimed space: %s\n", humanSize(freed))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also remove cache mounts and untagged images")
	return cmd
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func normalizeName(s string) (string, error) { return solver.NormalizeRef(s) }
