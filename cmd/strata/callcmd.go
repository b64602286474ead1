package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/subrequest"
)

// runCall answers `strata build --call targets|outline|check[,format=json]` without building,
// as buildx does.
func runCall(cmd *cobra.Command, g *globalOpts, o *buildOpts, contextArg string) error {
	what, format := o.call, "text"
	if name, rest, ok := strings.Cut(o.call, ","); ok {
		what = name
		k, v, _ := strings.Cut(rest, "=")
		if k != "format" || (v != "json" && v != "text") {
			return fmt.Errorf("--call %s: the only option is format=text|json", o.call)
		}
		format = v
	}
	dfPath := o.file
	if dfPath == "" {
		dfPath = filepath.Join(contextArg, "Dockerfile")
	}
	var df []byte
	var err error
	if dfPath == "-" {
		df, err = io.ReadAll(cmd.InOrStdin())
	} else {
		df, err = os.ReadFile(dfPath)
	}
	if err != nil {
		return fmt.Errorf("read Dockerfile: %w", err)
	}
	out := cmd.OutOrStdout()
	switch what {
	case "targets":
		ts, err := subrequest.Targets(df)
		if err != nil {
			return fmt.Errorf("--call targets: %s: %w", filepath.Base(dfPath), err)
		}
		if format == "json" {
			return subrequest.JSON(out, map[string]any{"targets": ts})
		}
		return subrequest.PrintTargets(out, ts)
	case "outline":
		args, err := parseKVs(o.buildArgs, true, "--build-arg")
		if err != nil {
			return err
		}
		ol, err := subrequest.OutlineOf(df, o.target, args)
		if err != nil {
			return fmt.Errorf("--call outline: %s: %w", filepath.Base(dfPath), err)
		}
		if format == "json" {
			return subrequest.JSON(out, ol)
		}
		return subrequest.PrintOutline(out, ol)
	case "check":
		// strata's checks are its own cache rules (strata check), not BuildKit's lint rules:
		// same exit status as buildx, 1 when there is a finding.
		if dfPath == "-" {
			return fmt.Errorf("--call check reads the Dockerfile from a file; use strata check -f FILE")
		}
		root, err := historyRoot(g)
		if err != nil {
			return err
		}
		cf := "text"
		if format == "json" {
			cf = "json"
		}
		code, err := runCheck(out, cmd.ErrOrStderr(), &checkOpts{file: dfPath, format: cf, failOn: "warning"}, root, []string{contextArg})
		if err != nil {
			return err
		}
		if code != 0 {
			return &exitError{code: code}
		}
		return nil
	}
	return fmt.Errorf("--call %s: use build, targets, outline or check", o.call)
}
