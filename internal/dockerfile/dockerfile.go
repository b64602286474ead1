// Package dockerfile is strata's frontend: it turns a Dockerfile into a graph.Build with the same
// syntax and semantics as BuildKit's dockerfile2llb (ARG/ENV scoping, stage resolution and
// pruning, ONBUILD, heredocs, RUN --mount), using BuildKit's own parser packages.
package dockerfile

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/platform"
)

// Resolver looks up images for FROM, COPY --from and RUN --mount from=.
type Resolver interface {
	// ResolveImageConfig resolves an image reference (or "oci-layout://PATH[:tag]") for a FROM or COPY --from=image.
	ResolveImageConfig(ctx context.Context, ref string, platform ocispec.Platform) (digest string, cfg dockerspec.DockerOCIImage, err error)
}

// Options is everything Parse needs besides the context.
type Options struct {
	// Dockerfile must not change once Parse is called: big heredoc bodies in the result are
	// strings over these bytes, not copies.
	Dockerfile []byte
	Filename   string // for errors, e.g. "Dockerfile"
	BuildArgs  map[string]string
	Target     string
	Platform   ocispec.Platform // TARGETPLATFORM: the host's platform when zero
	// BuildPlatform is BUILDPLATFORM, where RUN executes natively: the host's when zero.
	BuildPlatform ocispec.Platform
	Labels        map[string]string // --label, applied to the target stage's config
	// NamedContexts is --build-context NAME=VALUE: "docker-image://REF", "oci-layout://PATH", or a
	// local dir path.
	NamedContexts map[string]string
	Resolver      Resolver
	// Sandbox is set on every RUN (--add-host, --ulimit, --shm-size); the build arg
	// BUILDKIT_SANDBOX_HOSTNAME, when given, sets its hostname.
	Sandbox graph.Sandbox
}

// Parse parses and expands a Dockerfile into the stages the target needs. Every error it returns
// is an *Error.
func Parse(ctx context.Context, opts Options) (*graph.Build, error) {
	file := opts.Filename
	if file == "" {
		file = "Dockerfile"
	}
	b, err := newBuilder(ctx, file, opts)
	if err != nil {
		return nil, toError(file, err)
	}
	build, err := b.run()
	if err != nil {
		return nil, toError(file, err)
	}
	return build, nil
}

type builder struct {
	ctx      context.Context
	file     string
	opts     Options
	platform ocispec.Platform // TARGETPLATFORM
	buildP   ocispec.Platform // BUILDPLATFORM
	lex      *shell.Lex
	global   *envList // meta ARGs + predefined platform args: what FROM expands with
	proxyEnv []string
	stages   []*stageState
	byName   map[string]*stageState
	images   map[string]resolvedImage
	metaArgs []instructions.ArgCommand
	warnings []string
	lint     *linter.Linter // BuildKit's rule linter; fails the build only with check=error=true
}

type resolvedImage struct {
	digest string
	img    dockerspec.DockerOCIImage
	err    error
}

// stageState is a FROM block while it is being resolved and dispatched.
type stageState struct {
	index    int
	ist      instructions.Stage
	name     string
	line     int
	baseName string      // FROM argument after ARG expansion
	base     *stageState // FROM <earlier stage>
	platform ocispec.Platform
	// named is set when a --build-context replaces the whole stage (matching its AS name).
	named    *extRef
	commands []*command
	deps     map[*stageState]*command // --from/--mount sources and the base, for cycle reports

	resolved    bool
	onbuildDone bool
	baseRef     extRef // image base (possibly redirected by a named context)
	digest      string
	img         dockerspec.DockerOCIImage

	gs  *graph.Stage
	st  *state // state after the last step, inherited by stages built FROM this one
	pos int
}

// command is an instruction plus where its --from / --mount from= point.
type command struct {
	cmd     instructions.Command
	onbuild bool
	sources []*srcRef // COPY: one entry; RUN: one per mount (nil when the mount has no from)
}

type srcRef struct {
	stage *stageState
	name  string // not a stage: a named context or an image
}

// extRef is a name that is not a stage, after named contexts are applied.
type extRef struct {
	image   string // reference for the Resolver
	context string // named local context
}

// state is what BuildKit keeps in its llb.State and image config while dispatching.
type state struct {
	env       *envList
	user      string
	dir       string
	cfg       dockerspec.DockerOCIImageConfig
	author    string
	buildArgs []instructions.KeyValuePairOptional
	cmdSet    bool
}

func (s *state) clone() *state {
	c := *s
	c.env = s.env.clone()
	c.cfg = cloneConfig(s.cfg)
	c.buildArgs = append([]instructions.KeyValuePairOptional{}, s.buildArgs...)
	c.cmdSet = false
	return &c
}

func newBuilder(ctx context.Context, file string, opts Options) (*builder, error) {
	if len(bytes.TrimSpace(opts.Dockerfile)) == 0 {
		return nil, &Error{File: file, Msg: "the Dockerfile cannot be empty"}
	}
	b := &builder{
		ctx:    ctx,
		file:   file,
		opts:   opts,
		byName: map[string]*stageState{},
		images: map[string]resolvedImage{},
	}
	b.platform, b.buildP = platform.Host(), platform.Host()
	if opts.Platform.Architecture != "" {
		b.platform = platform.Normalize(opts.Platform)
	}
	if opts.BuildPlatform.Architecture != "" {
		b.buildP = platform.Normalize(opts.BuildPlatform)
	}
	if err := checkSyntax(file, opts.Dockerfile, opts.BuildArgs); err != nil {
		return nil, err
	}
	res, err := parseHeredocs(opts.Dockerfile, bigHeredoc)
	if err != nil {
		// The parser turns bufio.ErrTooLong into a message without the line.
		if strings.Contains(err.Error(), "line greater than max allowed size") {
			return nil, longLine(file, opts.Dockerfile)
		}
		return nil, err
	}
	b.lex = shell.NewLex(res.EscapeToken)
	if b.lint, err = newLinter(opts.Dockerfile, opts.BuildArgs); err != nil {
		return nil, &Error{File: file, Msg: err.Error()}
	}
	var stages []instructions.Stage
	var metaArgs []instructions.ArgCommand
	res.withShortLocations(func() { stages, metaArgs, err = instructions.Parse(res.AST, b.lint) })
	if err != nil {
		return nil, err
	}
	lintParse(b.lint, res.Result, stages)
	if len(stages) == 0 {
		return nil, &Error{File: file, Msg: "dockerfile contains no stages to build"}
	}
	b.metaArgs = metaArgs
	for i, st := range stages {
		b.stages = append(b.stages, &stageState{index: i, ist: st, name: st.Name, line: locLine(st.Location)})
	}
	b.proxyEnv = proxyEnv(opts.BuildArgs)
	if h, ok := opts.BuildArgs["BUILDKIT_SANDBOX_HOSTNAME"]; ok && h != "" {
		b.opts.Sandbox.Hostname = h
	}
	return b, nil
}

func (b *builder) errorf(line int, format string, args ...any) error {
	return &Error{File: b.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// warnf records a warning about a Dockerfile line, worded like BuildKit's lint warnings.
func (b *builder) warnf(line int, format string, args ...any) {
	b.warnings = append(b.warnings, fmt.Sprintf("%s:%d: %s", b.file, line, fmt.Sprintf(format, args...)))
}

// proxyEnv is what BuildKit's exec op adds to every RUN's environment for the proxy build args
// (llb.ProxyEnv): each one matched case-insensitively (the last spelling in sorted order wins)
// and set in both spellings, e.g. HTTP_PROXY and http_proxy, whichever the user gave.
func proxyEnv(args map[string]string) []string {
	names := []string{"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY"}
	vals := map[string]string{}
	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, n := range names {
			if strings.EqualFold(k, n) {
				vals[n] = args[k]
			}
		}
	}
	var out []string
	for _, n := range names {
		if v := vals[n]; v != "" {
			out = append(out, n+"="+v, strings.ToLower(n)+"="+v)
		}
	}
	return out
}

func (b *builder) run() (*graph.Build, error) {
	targetName := b.opts.Target
	if targetName == "" {
		targetName = b.stages[len(b.stages)-1].name
	}
	if err := b.buildGlobalArgs(targetName); err != nil {
		return nil, err
	}
	if err := b.initStages(); err != nil {
		return nil, err
	}
	target, err := b.resolveTarget()
	if err != nil {
		return nil, err
	}
	for _, s := range b.stages {
		for _, c := range s.ist.Commands {
			cmd, err := b.newCommand(c, false)
			if err != nil {
				return nil, err
			}
			s.commands = append(s.commands, cmd)
		}
		b.addDeps(s, s.commands)
	}
	if err := b.checkCycles(); err != nil {
		return nil, err
	}
	if err := b.resolveReachable(target); err != nil {
		return nil, err
	}
	reach := reachable(target)
	build := &graph.Build{Platform: b.platform, Warnings: b.warnings}
	for _, s := range b.stages {
		if !reach[s] {
			continue
		}
		if err := b.dispatchStage(s); err != nil {
			return nil, err
		}
		build.Stages = append(build.Stages, s.gs)
	}
	// BuildKit reports check=error=true violations once everything is dispatched, for the file.
	if err := b.lint.Error(); err != nil {
		return nil, &Error{File: b.file, Msg: err.Error()}
	}
	if len(b.opts.Labels) > 0 {
		if target.gs.Config.Labels == nil {
			target.gs.Config.Labels = map[string]string{}
		}
		for k, v := range b.opts.Labels {
			target.gs.Config.Labels[k] = v
		}
	}
	build.Target = target.gs
	return build, nil
}

// buildGlobalArgs computes the scope FROM lines expand in: BuildKit's predefined platform args,
// then the ARGs before the first FROM, each overridable with --build-arg.
func (b *builder) buildGlobalArgs(target string) error {
	if target == "" {
		target = "default"
	}
	p, bp := b.platform, b.buildP
	g := newEnvList(nil)
	for _, kv := range [][2]string{
		{"BUILDPLATFORM", platform.Format(bp)},
		{"BUILDOS", bp.OS},
		{"BUILDOSVERSION", bp.OSVersion},
		{"BUILDARCH", bp.Architecture},
		{"BUILDVARIANT", bp.Variant},
		{"TARGETPLATFORM", platform.Format(p)},
		{"TARGETOS", p.OS},
		{"TARGETOSVERSION", p.OSVersion},
		{"TARGETARCH", p.Architecture},
		{"TARGETVARIANT", p.Variant},
		{"TARGETSTAGE", target},
	} {
		v := kv[1]
		if ov, ok := b.opts.BuildArgs[kv[0]]; ok {
			v = ov
		}
		g.set(kv[0], v)
	}
	for _, cmd := range b.metaArgs {
		for _, kp := range cmd.Args {
			if v, ok := b.opts.BuildArgs[kp.Key]; ok {
				g.set(kp.Key, v)
				continue
			}
			if kp.Value != nil {
				v, _, err := b.lex.ProcessWord(*kp.Value, g)
				if err != nil {
					return b.errorf(locLine(cmd.Location()), "ARG %s: %v", kp.Key, err)
				}
				g.set(kp.Key, v)
			}
		}
	}
	b.global = g
	return nil
}

func (b *builder) initStages() error {
	for _, s := range b.stages {
		res, _, err := b.lex.ProcessWord(s.ist.BaseName, b.global)
		if err != nil {
			return b.errorf(s.line, "FROM %s: %v", s.ist.BaseName, err)
		}
		if res == "" {
			return b.errorf(s.line, "base name (%s) should not be blank", s.ist.BaseName)
		}
		s.baseName = res
		s.platform = b.platform
		if v := s.ist.Platform; v != "" {
			pv, _, err := b.lex.ProcessWord(v, b.global)
			if err != nil {
				return b.errorf(s.line, "failed to process arguments for platform %s: %v", v, err)
			}
			if pv == "" {
				return b.errorf(s.line, "empty platform value from expression %s", v)
			}
			p, err := platform.Parse(pv)
			if err != nil {
				return b.errorf(s.line, "failed to parse platform %s: %v", v, err)
			}
			s.platform = p
		}
		if s.name != "" {
			if prev, ok := b.byName[s.name]; ok {
				// BuildKit only warns (lint rule DuplicateStageName, testDuplicateStageName in
				// dockerfile_check_test.go): a later FROM sees the latest stage defined before
				// it, and --target, COPY --from and --mount from= see the last one in the file.
				b.warnf(s.line, "DuplicateStageName: Duplicate stage name %q, stage names should be unique (first defined on line %d)", s.name, prev.line)
			}
			ref, ok, err := b.namedContext(s.name)
			if err != nil {
				return b.errorf(s.line, "%v", err)
			}
			if ok {
				s.named = &ref
			}
		}
		// Only earlier stages can be a base, so a later stage with the same name as an image
		// does not shadow it. Unlike --from and --target, FROM matches the (lowercased) stage
		// name exactly, as BuildKit does: "FROM Build" names an image, which is then refused
		// as an invalid reference.
		if s.named == nil {
			if base, ok := b.byName[s.baseName]; ok {
				s.base = base
				// As in dockerfile2llb, a stage built FROM another one has that one's platform.
				s.platform = base.platform
			}
		}
		if s.name != "" {
			b.byName[s.name] = s
		}
	}
	return nil
}

func (b *builder) stageNames() []string {
	var names []string
	for _, s := range b.stages {
		if s.name != "" {
			names = append(names, s.name)
		}
	}
	return names
}

func (b *builder) resolveTarget() (*stageState, error) {
	if b.opts.Target == "" {
		return b.stages[len(b.stages)-1], nil
	}
	if s, ok := b.byName[strings.ToLower(b.opts.Target)]; ok {
		return s, nil
	}
	names := b.stageNames()
	avail := "none (no stage is named with AS)"
	if len(names) > 0 {
		avail = strings.Join(names, ", ")
	}
	return nil, &Error{File: b.file, Msg: fmt.Sprintf("target stage %q could not be found; available stages: %s", b.opts.Target, avail)}
}

// namedContext finds a --build-context for name, trying the forms BuildKit matches an image name
// in ("alpine", "alpine:latest", "docker.io/library/alpine").
func (b *builder) namedContext(name string) (extRef, bool, error) {
	if len(b.opts.NamedContexts) == 0 || strings.EqualFold(name, "scratch") || strings.EqualFold(name, "context") {
		return extRef{}, false, nil
	}
	cands := []string{name}
	n := name
	for _, p := range []string{"docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"} {
		if strings.HasPrefix(n, p) {
			n = strings.TrimPrefix(n, p)
			break
		}
	}
	cands = append(cands, n, strings.TrimSuffix(n, ":latest"))
	keys := make([]string, 0, len(b.opts.NamedContexts))
	for k := range b.opts.NamedContexts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, c := range cands {
		for _, k := range keys {
			if !strings.EqualFold(k, c) {
				continue
			}
			v := b.opts.NamedContexts[k]
			switch {
			case strings.HasPrefix(v, "docker-image://"):
				return extRef{image: strings.TrimPrefix(v, "docker-image://")}, true, nil
			case strings.HasPrefix(v, "oci-layout://"):
				return extRef{image: v}, true, nil
			case strings.Contains(v, "://"):
				return extRef{}, false, fmt.Errorf("build context %q: unsupported source %q (use docker-image://, oci-layout:// or a directory)", k, v)
			default:
				return extRef{context: k}, true, nil
			}
		}
	}
	return extRef{}, false, nil
}

// newCommand records where an instruction reads from. Like BuildKit, --from cannot use variables
// because the stage graph must be known before anything is expanded.
func (b *builder) newCommand(ic instructions.Command, onbuild bool) (*command, error) {
	cmd := &command{cmd: ic, onbuild: onbuild}
	line := locLine(ic.Location())
	switch c := ic.(type) {
	case *instructions.CopyCommand:
		if c.From == "" {
			break
		}
		res, _, err := b.lex.ProcessWord(c.From, shell.EnvsFromSlice(nil))
		if err != nil || res != c.From {
			return nil, b.errorf(line, "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround")
		}
		if idx, err := strconv.Atoi(c.From); err == nil {
			if idx < 0 || idx >= len(b.stages) {
				return nil, b.errorf(line, "COPY --from=%s: invalid stage index %d", c.From, idx)
			}
			cmd.sources = []*srcRef{{stage: b.stages[idx]}}
		} else if s, ok := b.byName[strings.ToLower(c.From)]; ok {
			cmd.sources = []*srcRef{{stage: s}}
		} else {
			cmd.sources = []*srcRef{{name: c.From}}
		}
	case *instructions.RunCommand:
		for _, m := range instructions.GetMounts(c) {
			switch {
			case m.From == "":
				cmd.sources = append(cmd.sources, nil)
			default:
				if s, ok := b.byName[strings.ToLower(m.From)]; ok {
					cmd.sources = append(cmd.sources, &srcRef{stage: s})
				} else {
					cmd.sources = append(cmd.sources, &srcRef{name: m.From})
				}
			}
		}
	}
	return cmd, nil
}

func (b *builder) addDeps(s *stageState, cmds []*command) bool {
	if s.deps == nil {
		s.deps = map[*stageState]*command{}
	}
	added := false
	for _, c := range cmds {
		for _, src := range c.sources {
			if src != nil && src.stage != nil {
				if _, ok := s.deps[src.stage]; !ok {
					s.deps[src.stage] = c
					added = true
				}
			}
		}
	}
	return added
}

// checkCycles rejects stages that (transitively) read from themselves.
func (b *builder) checkCycles() error {
	const (
		unvisited = iota
		onPath
		done
	)
	mark := map[*stageState]int{}
	var visit func(s *stageState) (*stageState, *command)
	visit = func(s *stageState) (*stageState, *command) {
		mark[s] = onPath
		edges := func(yield func(*stageState, *command) bool) {
			if s.base != nil && !yield(s.base, nil) {
				return
			}
			for _, c := range s.commands {
				for _, src := range c.sources {
					if src != nil && src.stage != nil && !yield(src.stage, c) {
						return
					}
				}
			}
		}
		var bad *stageState
		var badCmd *command
		edges(func(d *stageState, c *command) bool {
			switch mark[d] {
			case onPath:
				bad, badCmd = d, c
				return false
			case unvisited:
				if x, xc := visit(d); x != nil {
					bad, badCmd = x, xc
					if badCmd == nil {
						badCmd = c
					}
					return false
				}
			}
			return true
		})
		if bad != nil {
			return bad, badCmd
		}
		mark[s] = done
		return nil, nil
	}
	for _, s := range b.stages {
		if mark[s] != unvisited {
			continue
		}
		if bad, c := visit(s); bad != nil {
			line := bad.line
			if c != nil && !c.onbuild {
				line = locLine(c.cmd.Location())
			}
			return b.errorf(line, "circular dependency detected on stage: %s", displayName(bad))
		}
	}
	return nil
}

func displayName(s *stageState) string {
	if s.name != "" {
		return s.name
	}
	return "stage-" + strconv.Itoa(s.index)
}

func reachable(target *stageState) map[*stageState]bool {
	seen := map[*stageState]bool{}
	var walk func(s *stageState)
	walk = func(s *stageState) {
		if seen[s] {
			return
		}
		seen[s] = true
		if s.base != nil {
			walk(s.base)
		}
		for _, c := range s.commands {
			for _, src := range c.sources {
				if src != nil && src.stage != nil {
					walk(src.stage)
				}
			}
		}
	}
	walk(target)
	return seen
}

// resolveReachable resolves the base images of the stages the target needs and expands their
// ONBUILD triggers, repeating while triggers pull in more stages (BuildKit does the same).
func (b *builder) resolveReachable(target *stageState) error {
	for {
		reach := reachable(target)
		for _, s := range b.stages {
			if !reach[s] || s.resolved {
				continue
			}
			s.resolved = true
			if err := b.resolveBase(s); err != nil {
				return err
			}
		}
		newDeps := false
		for _, s := range b.stages {
			if !reach[s] || s.onbuildDone {
				continue
			}
			s.onbuildDone = true
			if s.named != nil {
				continue
			}
			var triggers []string
			if s.base != nil {
				for _, c := range s.base.commands {
					if ob, ok := c.cmd.(*instructions.OnbuildCommand); ok {
						triggers = append(triggers, ob.Expression)
					}
				}
			} else {
				triggers = s.img.Config.OnBuild
			}
			if len(triggers) == 0 {
				continue
			}
			cmds, err := b.parseTriggers(s, triggers)
			if err != nil {
				return err
			}
			s.commands = append(cmds, s.commands...)
			if b.addDeps(s, cmds) {
				newDeps = true
			}
		}
		if !newDeps {
			return nil
		}
		if err := b.checkCycles(); err != nil {
			return err
		}
	}
}

func (b *builder) parseTriggers(s *stageState, triggers []string) ([]*command, error) {
	var out []*command
	for _, t := range triggers {
		res, err := parser.Parse(strings.NewReader(t))
		if err != nil {
			return nil, b.errorf(s.line, "ONBUILD %s: %v", t, err)
		}
		if len(res.AST.Children) != 1 {
			return nil, b.errorf(s.line, "onbuild trigger should be a single expression")
		}
		node := res.AST.Children[0]
		// Errors and progress point at the FROM that pulled the trigger in.
		node.StartLine, node.EndLine = s.line, s.line
		ic, err := instructions.ParseCommand(node)
		if err != nil {
			return nil, b.errorf(s.line, "ONBUILD %s: %v", t, unwrapLocation(err))
		}
		cmd, err := b.newCommand(ic, true)
		if err != nil {
			return nil, err
		}
		out = append(out, cmd)
	}
	return out, nil
}

func unwrapLocation(err error) error {
	var le *parser.LocationError
	for e := err; e != nil; {
		if l, ok := e.(*parser.LocationError); ok {
			le = l
			break
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	if le != nil && le.Unwrap() != nil {
		return le.Unwrap()
	}
	return err
}

func (b *builder) resolveBase(s *stageState) error {
	if s.platform.OS != "linux" {
		// Only linux containers run (natively or under QEMU); BuildKit fails the same stage
		// when it has to run a step, strata as soon as the target needs it.
		return b.errorf(s.line, "FROM --platform=%s: only linux platforms can be built", platform.Format(s.platform))
	}
	var ref extRef
	switch {
	case s.named != nil:
		ref = *s.named
	case s.base != nil:
		return nil
	case strings.EqualFold(s.baseName, "scratch"):
		return nil
	default:
		r, ok, err := b.namedContext(s.baseName)
		if err != nil {
			return b.errorf(s.line, "%v", err)
		}
		if ok {
			ref = r
		} else {
			ref = extRef{image: s.baseName}
		}
	}
	s.baseRef = ref
	if ref.image == "" {
		return nil
	}
	ri := b.resolveImage(ref.image, s.platform)
	if ri.err != nil {
		return b.errorf(s.line, "%s: %v", s.baseName, ri.err)
	}
	s.digest, s.img = ri.digest, ri.img
	if have := s.img.Platform; have.Architecture != "" && (have.OS != s.platform.OS || platform.Normalize(have).Architecture != s.platform.Architecture) {
		// BuildKit uses a single-platform base of another platform and warns with this rule.
		b.warnf(s.line, "InvalidBaseImagePlatform: Base image %s was pulled with platform %q, expected %q for current build",
			s.baseName, platform.Format(platform.Normalize(have)), platform.Format(s.platform))
	}
	return nil
}

func (b *builder) resolveImage(ref string, p ocispec.Platform) resolvedImage {
	// One reference names a different image per platform.
	mk := ref + "|" + platform.Format(p)
	if ri, ok := b.images[mk]; ok {
		return ri
	}
	var ri resolvedImage
	if b.opts.Resolver == nil {
		ri.err = fmt.Errorf("no image resolver configured")
	} else {
		ri.digest, ri.img, ri.err = b.opts.Resolver.ResolveImageConfig(b.ctx, ref, p)
	}
	b.images[mk] = ri
	return ri
}

// maxLine is the longest line BuildKit's parser reads (its bufio.Scanner buffer).
const maxLine = 65535

// longLine names the first line the parser could not read; the parser's own error has no line.
func longLine(file string, df []byte) error {
	for i, line := range bytes.Split(df, []byte("\n")) {
		if len(line) > maxLine {
			return &Error{File: file, Line: i + 1, Msg: fmt.Sprintf("line is %d bytes, more than the %d a Dockerfile line may have: split it with \\ continuations or move the data into a file", len(line), maxLine)}
		}
	}
	return &Error{File: file, Msg: fmt.Sprintf("a line is longer than %d bytes", maxLine)}
}
