package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/check"
)

type checkOpts struct {
	file, format, failOn string
	fix, diff            bool
}

func newCheckCmd() *cobra.Command {
	o := &checkOpts{}
	cmd := &cobra.Command{
		Use:   "check [flags] [CONTEXT]",
		Short: "Find cache-hostile patterns in a Dockerfile and rewrite them",
		Long: `Find cache-hostile patterns in a Dockerfile (see docs/CHECK.md).

Exit status: 0 when no finding is at or above --fail-on, 1 when one is, 2 on an error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// --root is the root command's persistent flag: the store whose build history
			// prices the findings, resolved as `strata history` resolves it.
			flagRoot, _ := cmd.Flags().GetString("root")
			root, err := historyRoot(&globalOpts{root: flagRoot})
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "ERROR:", err)
				return &exitError{code: 2}
			}
			code, err := runCheck(cmd.OutOrStdout(), cmd.ErrOrStderr(), o, root, args)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "ERROR:", err)
				return &exitError{code: 2}
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "file", "f", "", "Dockerfile (default CONTEXT/Dockerfile)")
	f.StringVar(&o.format, "format", "text", "output format: text, json or sarif")
	f.StringVar(&o.failOn, "fail-on", "warning", "exit 1 when a finding is at least this severe: info, warning, error or none")
	f.BoolVar(&o.fix, "fix", false, "rewrite the Dockerfile (and write a .dockerignore) where a fix verifies")
	f.BoolVar(&o.diff, "diff", false, "print the fixes as a unified diff instead of findings")
	return cmd
}

func runCheck(stdout, stderr io.Writer, o *checkOpts, root string, args []string) (int, error) {
	failOn, err := check.ParseSeverity(o.failOn)
	if err != nil {
		return 2, err
	}
	ctxDir := "."
	if len(args) == 1 {
		ctxDir = args[0]
	}
	file := o.file
	if file == "" {
		file = filepath.Join(ctxDir, "Dockerfile")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return 2, err
	}
	opts := check.Options{Path: file, Dockerfile: data, Context: ctxDir}
	if o.fix || o.diff {
		res, err := check.Fix(opts)
		if err != nil {
			return 2, err
		}
		if o.diff {
			fmt.Fprint(stdout, check.UnifiedDiff(diffName("a", file), diffName("b", file), res.Original, res.Dockerfile))
			for p, c := range res.Files {
				full := filepath.Join(ctxDir, p)
				old, _ := os.ReadFile(full)
				fmt.Fprint(stdout, check.UnifiedDiff(diffName("a", full), diffName("b", full), string(old), c))
			}
		}
		for _, s := range res.Skipped {
			fmt.Fprintln(stderr, s)
		}
		if o.fix {
			if res.Dockerfile != res.Original {
				if err := writeKeepingMode(file, []byte(res.Dockerfile)); err != nil {
					return 2, err
				}
			}
			for p, c := range res.Files {
				if err := writeKeepingMode(filepath.Join(ctxDir, p), []byte(c)); err != nil {
					return 2, err
				}
			}
			fmt.Fprintf(stderr, "%s: %d fix(es) applied\n", file, len(res.Applied))
			data = []byte(res.Dockerfile)
			opts.Dockerfile = data
		}
		if o.diff && !o.fix {
			return 0, nil
		}
	}
	rep, err := check.Check(opts)
	if err != nil {
		return 2, err
	}
	// The history only adds prices: one that cannot be read is a note, never a failed check.
	skipped, err := check.PriceFromHistory(rep, root)
	if err != nil {
		skipped = append(skipped, err.Error())
	}
	noteSkipped(stderr, skipped)
	switch o.format {
	case "text":
		err = check.WriteText(stdout, rep)
	case "json":
		err = check.WriteJSON(stdout, rep)
	case "sarif":
		err = check.WriteSARIF(stdout, rep, version)
	default:
		return 2, fmt.Errorf("unknown --format %q (want text, json or sarif)", o.format)
	}
	if err != nil {
		return 2, err
	}
	if rep.Max() >= failOn {
		return 1, nil
	}
	return 0, nil
}

// diffName is git's a/… b/… naming, which `patch -p1` and `git apply` take.
func diffName(side, p string) string {
	return side + "/" + strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/")
}

// writeKeepingMode replaces a file through a temp file and rename, so an interrupted --fix never
// leaves half a Dockerfile.
func writeKeepingMode(p string, data []byte) error {
	mode := os.FileMode(0o644)
	if st, err := os.Stat(p); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".strata-check-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}
