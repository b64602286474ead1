package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/solver"
	"github.com/strata-build/strata/internal/store"
)

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
			fmt.Fprintln(tw, "NAME\tDIGEST\tCREATED\tSIZE\tLAZY")
			for _, name := range sortedKeys(tags) {
				d := tags[name]
				created, size, lazy := imageInfo(st, d)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, d.Encoded()[:12], created, store.FormatSize(size), lazy)
			}
			return tw.Flush()
		},
	}
}

// imageInfo returns an image's creation time, size, and how many of its layers are lazy: known
// from a registry or an imported cache, their bytes fetched only when something needs them.
func imageInfo(st *store.Store, d digest.Digest) (string, int64, string) {
	data, err := st.ReadBlob(d)
	if err != nil {
		return "?", 0, ""
	}
	var m struct {
		ocispec.Manifest
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(data, &m) != nil {
		return "?", 0, ""
	}
	if len(m.Manifests) > 0 {
		// A multi-platform build: its platforms' images together, the latest creation time.
		created, size, lazy := "?", int64(0), 0
		for _, c := range m.Manifests {
			cr, sz, lz := imageInfo(st, c.Digest)
			if created == "?" || (cr != "?" && cr > created) {
				created = cr
			}
			size += sz
			if lz != "no" {
				lazy++
			}
		}
		lazyText := "no"
		if lazy > 0 {
			lazyText = fmt.Sprintf("%d of %d platforms partly", lazy, len(m.Manifests))
		}
		return created, size, lazyText
	}
	size := m.Config.Size
	lazy := 0
	for _, l := range m.Layers {
		size += l.Size
		if !st.Has(l.Digest) {
			lazy++
		}
	}
	lazyText := "no"
	if lazy > 0 {
		lazyText = fmt.Sprintf("%d of %d layers", lazy, len(m.Layers))
	}
	created := "?"
	if cd, err := st.ReadBlob(m.Config.Digest); err == nil {
		var c ocispec.Image
		if json.Unmarshal(cd, &c) == nil && c.Created != nil {
			created = c.Created.Format(time.RFC3339)
		}
	}
	return created, size, lazyText
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
		Long: `Show disk usage of the store by kind, its total and the automatic GC limit.

--verbose also lists what is kept and why: tagged images (never collected), then cache records,
pulled base images and cache mounts, most recently used first (GC evicts from the bottom).
SIZE is the bytes on disk an entry keeps alive (content shared by several entries counts in each).`,
		Args: cobra.NoArgs,
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
			var total int64
			for _, k := range u {
				total += k.Size
				fmt.Fprintf(tw, "%s\t%d\t%s\n", k.Kind, k.Count, binSize(k.Size))
			}
			fmt.Fprintf(tw, "TOTAL\t\t%s\n", binSize(total))
			if limit, src, err := gcLimit("", st.Root()); err == nil {
				if limit < 0 {
					fmt.Fprintf(tw, "GC LIMIT\t\toff (%s)\n", src)
				} else {
					fmt.Fprintf(tw, "GC LIMIT\t\t%s (%s)\n", binSize(limit), src)
				}
			}
			if verbose {
				inv, err := st.Inventory()
				if err != nil {
					return err
				}
				fmt.Fprintln(tw, "\nKEPT AS\tID\tCREATED\tLAST USED\tTOOK\tSIZE\tNAME")
				for _, e := range inv {
					id := strings.TrimPrefix(e.ID, "sha256:")
					if len(id) > 12 {
						id = id[:12]
					}
					lastUsed := "-"
					if !e.LastUsed.IsZero() {
						lastUsed = e.LastUsed.Local().Format(time.DateTime)
					}
					created := "-"
					if !e.Created.IsZero() {
						created = e.Created.Local().Format(time.DateTime)
					}
					took := "-"
					if e.Kind == store.KindRecord {
						took = e.Elapsed.Round(time.Millisecond).String()
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Kind, id, created, lastUsed, took, binSize(e.Size), e.Name)
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list what is kept, why, and when it was last used")
	return cmd
}

func newPruneCmd(g *globalOpts) *cobra.Command {
	var (
		all         bool
		keepStorage string
		filters     []string
	)
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove build cache and everything no image tag uses",
		Long: `Remove build cache, then every blob, layer and snapshot that no tag and no kept cache entry uses.

Without filters every cache record goes (and the step history behind miss reasons).
  --filter until=DURATION   only cache not used within DURATION (e.g. 24h, 90m)
  --keep-storage SIZE       keep the most recently used cache up to SIZE (e.g. 2GB, 512MB, 1.5g)
  --all                     pulled base images and cache mounts are cache too (and stat caches go)
Both filters together: remove entries older than DURATION, least recently used first, only while
the store is larger than SIZE. Tagged images are never removed (strata rmi first).

Prune needs the store to itself: while builds run it waits for them to finish (new builds wait
for the prune).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := store.PruneOptions{All: all, KeepStorage: -1}
			if keepStorage != "" {
				n, err := store.ParseSize(keepStorage)
				if err != nil {
					return fmt.Errorf("--keep-storage: %w", err)
				}
				o.KeepStorage = n
			}
			for _, f := range filters {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "until", "unused-for":
					d, err := time.ParseDuration(v)
					if err != nil || d <= 0 {
						return fmt.Errorf("--filter %s: want a positive duration like 24h or 90m", f)
					}
					o.Until = d
				default:
					return fmt.Errorf("--filter %s: only until=DURATION is supported", f)
				}
			}
			st, err := openExclusive(cmd, g)
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := st.Prune(o)
			if err != nil {
				return err
			}
			if n := describeRemoved(res.Removed); n != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "Removed %s\n", n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Total reclaimed space: %s\n", binSize(res.Freed))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also remove pulled base images, cache mounts and stat caches")
	cmd.Flags().StringVar(&keepStorage, "keep-storage", "", "keep the most recently used cache up to this size (e.g. 10GB)")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "until=DURATION: remove only cache not used within DURATION")
	cmd.Flags().BoolP("force", "f", false, "do not prompt (strata never prompts; accepted for buildx compatibility)")
	return cmd
}

func describeRemoved(m map[string]int) string {
	var parts []string
	for _, k := range []string{store.KindRecord, store.KindBase, store.KindMount} {
		if n := m[k]; n > 0 {
			s := k + "s"
			if n == 1 {
				s = k
			}
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	return strings.Join(parts, ", ")
}

// ---- configuration and automatic GC ----

// strataConfig is $STRATA_CONFIG or /etc/strata/config.json.
type strataConfig struct {
	Mirrors []string `json:"registry-mirrors"` // the same key as Docker's daemon.json
	// GCKeepStorage is the automatic GC limit: a size ("20GB", or a number of bytes) or "off".
	GCKeepStorage json.RawMessage `json:"gc-keep-storage"`
	HistoryKeep   *int            `json:"history-keep"` // builds kept in the history (build records)
}

func configPath() string {
	if p := os.Getenv("STRATA_CONFIG"); p != "" {
		return p
	}
	return "/etc/strata/config.json"
}

// loadConfig reads the config file; a missing file is an empty config.
func loadConfig() (strataConfig, error) {
	var c strataConfig
	data, err := os.ReadFile(configPath())
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("%s: %w", configPath(), err)
	}
	return c, nil
}

// gcLimit is the automatic GC limit in bytes (-1: off) and where it came from: the
// --gc-keep-storage flag, else the config file's "gc-keep-storage", else the smaller of 10% of
// the store's filesystem and 20 GiB.
func gcLimit(flag, root string) (int64, string, error) {
	parse := func(v, src string) (int64, string, error) {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "off", "none", "-1":
			return -1, src, nil
		}
		n, err := store.ParseSize(v)
		if err != nil {
			return 0, src, fmt.Errorf("%s: %w", src, err)
		}
		return n, src, nil
	}
	if flag != "" {
		return parse(flag, "--gc-keep-storage")
	}
	c, err := loadConfig()
	if err != nil {
		return 0, "", err
	}
	if len(c.GCKeepStorage) > 0 && string(c.GCKeepStorage) != "null" {
		src := configPath() + " gc-keep-storage"
		var v any
		if err := json.Unmarshal(c.GCKeepStorage, &v); err != nil {
			return 0, src, fmt.Errorf("%s: %w", src, err)
		}
		switch v := v.(type) {
		case string:
			return parse(v, src)
		case float64:
			if v < 0 {
				return -1, src, nil
			}
			return int64(v), src, nil
		default:
			return 0, src, fmt.Errorf("%s: want a size like \"20GB\" or \"off\"", src)
		}
	}
	return store.DefaultLimit(root), "default: 10% of disk, at most 20GiB", nil
}

// autoGC runs after a build, while the build still holds its shared store lock. When the store is
// over its limit it converts the lock to exclusive without waiting; if other strata processes
// hold the store (other builds, a prune) GC is skipped and the next build to finish alone does
// it. Everything this build used is leased (see store.AutoGC), so the result stays cached.
func autoGC(w io.Writer, st *store.Store, limit int64, quiet bool) {
	if limit < 0 {
		return
	}
	total, err := st.TotalUsage()
	if err != nil || total <= limit {
		return
	}
	if !st.TryExclusive() {
		if !quiet {
			fmt.Fprintf(w, "gc: store is %s, over its %s limit; skipped while other builds use it\n", binSize(total), binSize(limit))
		}
		return
	}
	res, err := st.AutoGC(limit)
	if err != nil {
		fmt.Fprintf(w, "warning: gc: %v\n", err)
		return
	}
	if res != nil && !quiet {
		fmt.Fprintf(w, "gc: store was %s, over its %s limit: removed %s; now %s\n",
			binSize(res.Before), binSize(limit), orNothing(describeRemoved(res.Removed)), binSize(res.After))
	}
}

func orNothing(s string) string {
	if s == "" {
		return "only unreferenced content"
	}
	return s
}

// binSize prints a size in the binary units --keep-storage parses (1KiB = 1024 bytes).
func binSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		f /= 1024
		if f < 1024 || u == "PiB" {
			return fmt.Sprintf("%.1f%s", f, u)
		}
	}
	return ""
}

func normalizeName(s string) (string, error) { return solver.NormalizeRef(s) }

func newStoreCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Check the local store",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newStoreVerifyCmd(g))
	return cmd
}

func newStoreVerifyCmd(g *globalOpts) *cobra.Command {
	var repair bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every blob, record and snapshot of the store (--repair removes what is broken)",
		Long: `Check the store: every blob against its digest, every layer record, cache record, tag and
pulled base image against what it names, every snapshot against its layer record, and leftovers
of killed processes (scratch dirs, temp files of interrupted writes, mounts under the store).
Prints one line per problem, then a summary; exits 1 if a problem remains.

--repair removes what is broken (a blob with the wrong content, then the records that name what
is now gone, stray scratch and mounts) so the store is consistent again; nothing that is fine is
touched, and everything removed costs at most a rebuild or a pull.

Like prune, verify needs the store to itself: it waits for running builds to finish.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openExclusive(cmd, g)
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := st.Verify(repair)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, p := range res.Problems {
				fmt.Fprintln(out, p)
			}
			fmt.Fprintln(out, res.Summary())
			if res.Unrepaired() > 0 {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "remove what is broken so the store is consistent again")
	return cmd
}

// openExclusive opens the store for prune or verify, which need it to themselves: it says so
// and waits while builds hold it.
func openExclusive(cmd *cobra.Command, g *globalOpts) (*store.Store, error) {
	root := g.root
	if root == "" {
		root = store.DefaultRoot()
	}
	st, err := store.OpenNoWait(root, true)
	if errors.Is(err, store.ErrBusy) {
		fmt.Fprintln(cmd.ErrOrStderr(), "waiting for running builds to finish...")
		st, err = store.Open(root, true)
	}
	return st, err
}
