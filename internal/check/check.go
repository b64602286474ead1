// Package check finds cache-hostile patterns in a Dockerfile (and its build context) and rewrites
// them: rules over a parsed Dockerfile plus a context listing, findings, fixes.
package check

import (
	"fmt"
	"sort"
	"strings"
)

// Severity orders findings for --fail-on.
type Severity int

const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	}
	return "info"
}

// ParseSeverity reads a --fail-on value; "none" is returned as a severity above every finding.
func ParseSeverity(s string) (Severity, error) {
	switch strings.ToLower(s) {
	case "info":
		return Info, nil
	case "warning", "warn":
		return Warning, nil
	case "error":
		return Error, nil
	case "none", "never":
		return Error + 1, nil
	}
	return 0, fmt.Errorf("unknown severity %q (want info, warning, error or none)", s)
}

// Rule describes one check. IDs are stable: they are what disable comments, SARIF and CI
// configurations name, so a rule is never renumbered.
type Rule struct {
	ID       string
	Name     string
	Severity Severity
	Summary  string
	// Why is the cache cost in one sentence, shown with every finding.
	Why string
}

// Rules lists every rule, in ID order.
var Rules = []Rule{
	{"STR001", "broad-copy-before-install", Warning, "Sources copied before the dependency install",
		"every edit to any copied file changes this layer, so the dependency install after it re-runs and re-downloads everything"},
	{"STR002", "multi-module-manifests", Warning, "Only the root manifest of a multi-module project copied before resolving",
		"the resolve step cannot see the modules' manifests, so their dependencies are fetched later, after the sources, on every edit (or the resolve fails)"},
	{"STR003", "package-cache-without-mount", Info, "Package manager downloads without a cache mount",
		"when this step re-runs it downloads every package again; a cache mount keeps the downloads across builds without putting them in the layer"},
	{"STR004", "cache-clean-in-cache-mount", Warning, "Cache cleaned inside a cache mount",
		"the clean empties the cache mount this step is given, so the next run downloads everything again"},
	{"STR005", "apt-update-separate", Warning, "apt-get update in a different RUN from apt-get install",
		"the update layer stays cached while the install changes, so the install runs against stale package lists (404s, old versions)"},
	{"STR006", "missing-dockerignore", Warning, "No .dockerignore while the context holds build output or VCS data",
		"a broad COPY then reads .git, node_modules, target… : every commit or local build changes its checksum and invalidates every step after it"},
	{"STR007", "copy-ignored-file", Error, "COPY of a path that .dockerignore excludes",
		"the excluded path is not in the context, so the COPY fails or copies nothing"},
	{"STR008", "volatile-arg-early", Warning, "Per-build value (date, git sha, build number) declared before RUN steps",
		"an ARG is part of the environment of every later RUN in its stage, so a value that changes every build re-runs all of them"},
	{"STR009", "add-url-without-checksum", Warning, "ADD of a URL without --checksum",
		"the builder must download the URL on every build to know whether it changed; with --checksum the key is known without fetching and the download is verified"},
	{"STR010", "volume-before-write", Warning, "VOLUME declared before a RUN that writes into it",
		"writes to a volume path after VOLUME are discarded by Docker's classic builder and hidden by the volume at run time; declare the VOLUME after the writes"},
}

// RuleByID returns the rule with that ID or name (case-insensitive).
func RuleByID(id string) (Rule, bool) {
	for _, r := range Rules {
		if strings.EqualFold(r.ID, id) || strings.EqualFold(r.Name, id) {
			return r, true
		}
	}
	return Rule{}, false
}

// Step names the build step a finding makes re-run, in the terms build history records use
// (stage display name, BuildKit progress position, first line), so that history can price it.
type Step struct {
	Stage string `json:"stage"`
	Pos   int    `json:"pos"`
	Line  int    `json:"line"`
	Text  string `json:"text"`
}

// Finding is one rule firing on one instruction.
type Finding struct {
	Rule     string   `json:"rule"`
	Name     string   `json:"name"`
	Severity Severity `json:"-"`
	Line     int      `json:"line"`
	EndLine  int      `json:"endLine"`
	Message  string   `json:"message"`
	Why      string   `json:"why"`
	Fix      string   `json:"fix"`
	// Affects is the step that re-runs because of the finding (zero when none does).
	Affects Step `json:"affects"`
	// Fixable is set when --fix has a rewrite for it (applied only if it verifies).
	Fixable bool `json:"fixable"`
	// Cost is what the finding cost in the recorded builds of this Dockerfile; nil when there
	// are none, or the rule's cost is not a re-run history can see (see Price).
	Cost *Cost `json:"cost,omitempty"`

	edit  func(*rewrite) error
	at    Step    // the instruction the finding is on, to find it in build records
	price pricing // how history prices it; zero: not priced
}

// Options is one check: the Dockerfile's bytes and, when known, its build context.
type Options struct {
	Path       string // for messages only
	Dockerfile []byte
	// Context is the build context directory; "" checks the Dockerfile alone (rules that need the
	// context stay silent).
	Context string
	// IgnoreFile overrides the .dockerignore location (e.g. Dockerfile.dockerignore); "" looks for
	// <Dockerfile>.dockerignore beside the Dockerfile, then .dockerignore in the context.
	IgnoreFile string
}

// Report is the result of a check.
type Report struct {
	Path     string    `json:"path"`
	Findings []Finding `json:"findings"`
}

// Max returns the highest severity found, or -1 when there are no findings.
func (r *Report) Max() Severity {
	m := Severity(-1)
	for _, f := range r.Findings {
		if f.Severity > m {
			m = f.Severity
		}
	}
	return m
}

// Check runs every rule. Errors (unparsable Dockerfile) name the file and line.
func Check(o Options) (*Report, error) {
	df, err := parse(o.Path, o.Dockerfile)
	if err != nil {
		return nil, err
	}
	ctx, err := loadContext(o)
	if err != nil {
		return nil, err
	}
	return run(df, ctx), nil
}

func run(df *dockerfile, ctx *buildContext) *Report {
	c := &checker{df: df, ctx: ctx}
	for _, fn := range []func(){c.broadCopy, c.multiModule, c.cacheMounts, c.aptUpdate, c.dockerignore, c.volatileArgs, c.addURL, c.volumes} {
		fn()
	}
	var out []Finding
	for _, f := range c.findings {
		if !df.disabled(f.Rule, f.Line) {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Line != out[j].Line {
			return out[i].Line < out[j].Line
		}
		return out[i].Rule < out[j].Rule
	})
	return &Report{Path: df.path, Findings: out}
}

type checker struct {
	df       *dockerfile
	ctx      *buildContext
	findings []Finding
}

// add records a finding and returns it, for the rules that say how history prices it.
func (c *checker) add(id string, in *instr, msg, fix string, affects *instr, edit func(*rewrite) error) *Finding {
	r, _ := RuleByID(id)
	f := Finding{Rule: r.ID, Name: r.Name, Severity: r.Severity, Line: in.node.StartLine, EndLine: in.node.EndLine,
		Message: msg, Why: r.Why, Fix: fix, Fixable: edit != nil, edit: edit, at: in.step()}
	if affects != nil {
		f.Affects = affects.step()
	}
	c.findings = append(c.findings, f)
	return &c.findings[len(c.findings)-1]
}
