package dockerfile

import (
	"fmt"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// checkArg is the build arg that overrides the "# check=" directive, as in BuildKit (dockerui).
const checkArg = "BUILDKIT_DOCKERFILE_CHECK"

// newLinter configures BuildKit's rule linter as its frontend does, from the BUILDKIT_DOCKERFILE_CHECK
// build arg or else the "# check=" directive. Its only effect in strata is check=error=true (or
// BUILDKIT_DOCKERFILE_CHECK=error=true): a build with a violation fails, as BuildKit's does. The
// rules strata runs are BuildKit's own rule objects, fired at the same points: the parser's
// (NoEmptyContinuation), instructions.Parse's (FromAsCasing, StageNameCasing,
// MaintainerDeprecated), DuplicateStageName/ReservedStageName, and the dispatch-time
// LegacyKeyValueFormat and JSONArgsRecommended. BuildKit has more (UndefinedVar,
// SecretsUsedInArgOrEnv, ConsistentInstructionCasing…), so with error=true strata fails on a
// subset of what BuildKit fails on, never on more.
func newLinter(df []byte, buildArgs map[string]string) (*linter.Linter, error) {
	opts, ok := buildArgs[checkArg]
	if !ok {
		opts, _, _, _ = parser.ParseDirective("check", df)
	}
	cfg, err := linter.ParseLintOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("failed to parse check options: %w", err)
	}
	// Warn must be set or the linter runs no rule at all; lint.Error reports the rules it ran.
	cfg.Warn = func(string, string, string, string, []parser.Range) {}
	return linter.New(cfg), nil
}

// lintParse runs the rules BuildKit fires before dispatch: the parser's empty-continuation
// warnings and the stage name checks (instructions.Parse runs its own through the linter).
func lintParse(lint *linter.Linter, res *parser.Result, stages []instructions.Stage) {
	for _, w := range res.Warnings {
		if w.URL == linter.RuleNoEmptyContinuation.URL && w.Location != nil {
			lint.Run(&linter.RuleNoEmptyContinuation, []parser.Range{*w.Location}, linter.RuleNoEmptyContinuation.Format())
		}
	}
	seen := map[string]bool{}
	for _, st := range stages {
		if st.Name == "" {
			continue
		}
		if st.Name == "context" || st.Name == "scratch" {
			lint.Run(&linter.RuleReservedStageName, st.Location, linter.RuleReservedStageName.Format(st.Name))
		}
		if seen[st.Name] {
			lint.Run(&linter.RuleDuplicateStageName, st.Location, linter.RuleDuplicateStageName.Format(st.Name))
		}
		seen[st.Name] = true
	}
}

// lintDispatch runs the rules BuildKit fires while dispatching an instruction; shell is the
// stage's SHELL at that point (JSONArgsRecommended is only raised without one).
func lintDispatch(lint *linter.Linter, ic instructions.Command, shell []string) {
	switch c := ic.(type) {
	case *instructions.EnvCommand:
		for _, e := range c.Env {
			if e.NoDelim {
				lint.Run(&linter.RuleLegacyKeyValueFormat, c.Location(), linter.RuleLegacyKeyValueFormat.Format(c.Name()))
			}
		}
	case *instructions.LabelCommand:
		for _, l := range c.Labels {
			if l.NoDelim {
				lint.Run(&linter.RuleLegacyKeyValueFormat, c.Location(), linter.RuleLegacyKeyValueFormat.Format(c.Name()))
			}
		}
	case *instructions.CmdCommand:
		if c.PrependShell && len(shell) == 0 {
			lint.Run(&linter.RuleJSONArgsRecommended, c.Location(), linter.RuleJSONArgsRecommended.Format(c.Name()))
		}
	case *instructions.EntrypointCommand:
		if c.PrependShell && len(shell) == 0 {
			lint.Run(&linter.RuleJSONArgsRecommended, c.Location(), linter.RuleJSONArgsRecommended.Format(c.Name()))
		}
	}
}
