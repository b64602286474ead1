// Command strata builds Dockerfiles into OCI images without a daemon.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at link time (-ldflags "-X main.version=…").
var version = "0.1.0-dev"

type globalOpts struct {
	root string
}

func main() {
	if os.Getenv(usernsWaitEnv) != "" {
		os.Exit(awaitMapping())
	}
	if os.Getenv(usernsMappedEnv) != "" {
		watchParent()
	}
	if sub := subcommand(os.Args[1:]); sub == "build" || os.Geteuid() != 0 && needsUserNS(sub) {
		if handled, code := reexecInNamespace(); handled {
			os.Exit(code)
		}
	}
	if p := os.Getenv("STRATA_CPUPROFILE"); p != "" && os.Getenv(nsEnv) != "" || p != "" && os.Geteuid() != 0 {
		// Profiling hook for bench/: profiles the process that does the work.
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	setSoftMemoryLimit()
	if p := os.Getenv("STRATA_MEMPROFILE"); p != "" && (os.Getenv(nsEnv) != "" || os.Geteuid() != 0) {
		stop := startPeakHeapProfile(p)
		defer stop()
	}
	g := &globalOpts{}
	root := &cobra.Command{
		Use:           "strata",
		Short:         "Build Dockerfiles into OCI images, without a daemon, cache first",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.root, "root", "", "store directory (default /var/lib/strata as root, $XDG_DATA_HOME/strata otherwise; STRATA_ROOT overrides)")
	root.AddCommand(newBuildCmd(g), newImagesCmd(g), newRmiCmd(g), newDuCmd(g), newPruneCmd(g), newStoreCmd(g), newHistoryCmd(g), newVersionCmd())
	root.AddCommand(newCheckCmd())
	root.AddCommand(newExplainCmd(g))
	root.AddCommand(newStatsCmd(g))
	if err := root.Execute(); err != nil {
		var ee *exitError
		pprof.StopCPUProfile()
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		os.Exit(1)
	}
}

// exitError carries an exit code for errors already printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the strata version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "strata %s\n", version)
		},
	}
}

// subcommand finds the command name among global flags ("strata --root DIR build …").
func subcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--root":
			i++ // its value
		case strings.HasPrefix(a, "-"):
		default:
			return a
		}
	}
	return ""
}
