package dockerfile

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/moby/buildkit/frontend/dockerfile/dfgitutil"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/copier"
	"github.com/strata-build/strata/internal/graph"
)

// nonEnvArgs are build args BuildKit keeps out of the RUN environment.
var nonEnvArgs = map[string]bool{
	"BUILDKIT_SBOM_SCAN_CONTEXT": true,
	"BUILDKIT_SBOM_SCAN_STAGE":   true,
}

func (b *builder) dispatchStage(s *stageState) error {
	gs := &graph.Stage{Index: s.index, Name: s.name, Platform: s.platform}
	s.gs = gs
	gs.Base = graph.Base{Line: s.line, Text: s.ist.SourceCode}
	var st *state
	counted := false
	switch {
	case s.named != nil || (s.base == nil && s.baseRef != extRef{}):
		gs.Base.Image = s.baseRef.image
		gs.Base.Context = s.baseRef.context
		gs.Base.Digest = s.digest
		if s.baseRef.image != "" {
			gs.Base.Config = s.img
			st = newState(s.img)
		} else {
			st = newState(emptyImage())
		}
		counted = true
	case s.base != nil:
		gs.Base.Stage = s.base.gs
		gs.Deps = append(gs.Deps, s.base.gs)
		st = s.base.st.clone()
		st.cfg.OnBuild = nil
		// BuildKit re-applies the inherited config env on top of the inherited state, which moves
		// those keys after the base stage's ARGs.
		if _, ok := shell.EnvsFromSlice(st.cfg.Env).Get("PATH"); !ok {
			st.cfg.Env = append(st.cfg.Env, "PATH="+defaultPath)
		}
		for _, kv := range st.cfg.Env {
			k, v, _ := strings.Cut(kv, "=")
			st.env.set(k, v)
		}
	default:
		gs.Base.Scratch = true
		st = newState(emptyImage())
	}
	gs.Author = st.author
	if counted {
		s.pos = 1
	}
	if s.named == nil {
		for _, c := range s.commands {
			switch c.cmd.(type) {
			case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
				gs.Total++
			}
		}
		if counted {
			gs.Total++
		}
		for _, c := range s.commands {
			step, err := b.dispatch(s, st, c)
			if err != nil {
				return err
			}
			gs.Steps = append(gs.Steps, step)
		}
	}
	gs.Config = st.cfg
	gs.Author = st.author
	s.st = st
	return nil
}

func commandText(ic instructions.Command) string {
	if s, ok := ic.(fmt.Stringer); ok {
		return s.String()
	}
	return ic.Name()
}

func emptyImage() dockerspec.DockerOCIImage {
	var img dockerspec.DockerOCIImage
	img.Config.WorkingDir = "/"
	img.Config.Env = []string{"PATH=" + defaultPath}
	return img
}

// newState starts a stage from an image config the way BuildKit does: triggers are consumed
// here, PATH is always set, and the image's ENV/WORKDIR/USER become the build state.
func newState(img dockerspec.DockerOCIImage) *state {
	cfg := cloneConfig(img.Config)
	cfg.OnBuild = nil
	if _, ok := shell.EnvsFromSlice(cfg.Env).Get("PATH"); !ok {
		cfg.Env = append(cfg.Env, "PATH="+defaultPath)
	}
	st := &state{env: newEnvList(cfg.Env), dir: "/", cfg: cfg, author: img.Author, user: cfg.User}
	if cfg.WorkingDir != "" {
		if wd, err := normalizeWorkdir("/", cfg.WorkingDir); err == nil {
			st.cfg.WorkingDir = wd
			st.dir = wd
		}
	}
	return st
}

func (b *builder) dispatch(s *stageState, st *state, c *command) (*graph.Step, error) {
	ic := c.cmd
	line := locLine(ic.Location())
	if c.onbuild {
		line = s.line
	}
	step := &graph.Step{
		Stage: s.gs,
		Line:  line,
		Text:  uppercaseCmd(commandText(ic)),
		Kind:  graph.KindMeta,
		User:  st.user,
		Dir:   st.dir,
	}
	if c.onbuild {
		step.Text = "ONBUILD " + step.Text
	}
	fail := func(err error) (*graph.Step, error) {
		if _, ok := err.(*Error); ok {
			return nil, err
		}
		msg := unwrapLocation(err).Error()
		if strings.HasPrefix(msg, "--") {
			return nil, b.errorf(line, "%s %s", strings.ToUpper(ic.Name()), msg)
		}
		return nil, b.errorf(line, "%s: %s", strings.ToUpper(ic.Name()), msg)
	}
	expand := func(word string) (string, error) {
		w, _, err := b.lex.ProcessWord(word, st.env)
		return w, err
	}
	if _, isArg := ic.(*instructions.ArgCommand); !isArg {
		if ex, ok := ic.(instructions.SupportsSingleWordExpansion); ok {
			if err := ex.Expand(expand); err != nil {
				return fail(err)
			}
		}
	}
	if ex, ok := ic.(instructions.SupportsSingleWordExpansionRaw); ok {
		// Heredoc bodies expand like a shell would: quotes inside them are data.
		raw := shell.NewLex('\\')
		raw.SkipProcessQuotes = true
		if err := ex.ExpandRaw(func(word string) (string, error) {
			if verbatim(word) {
				return word, nil
			}
			w, _, err := raw.ProcessWord(word, st.env)
			return w, err
		}); err != nil {
			return fail(err)
		}
	}
	lintDispatch(b.lint, ic, st.cfg.Shell)
	countStep := func() {
		s.pos++
		step.Pos = s.pos
	}

	var err error
	switch x := ic.(type) {
	case *instructions.RunCommand:
		step.Kind = graph.KindRun
		countStep()
		err = b.dispatchRun(s, st, c, x, step)
	case *instructions.CopyCommand:
		step.Kind = graph.KindCopy
		countStep()
		err = b.dispatchCopy(s, st, c, step, copyArgs{
			sd: x.SourcesAndDest, chown: x.Chown, chmod: x.Chmod, link: x.Link,
			excludes: x.ExcludePatterns, parents: x.Parents,
		})
	case *instructions.AddCommand:
		step.Kind = graph.KindAdd
		countStep()
		a := copyArgs{
			sd: x.SourcesAndDest, chown: x.Chown, chmod: x.Chmod, link: x.Link, add: true,
			excludes: x.ExcludePatterns, checksum: x.Checksum, unpack: x.Unpack,
		}
		if x.KeepGitDir != nil {
			a.keepGit, a.keepGitSet = *x.KeepGitDir, true
		}
		err = b.dispatchCopy(s, st, c, step, a)
	case *instructions.WorkdirCommand:
		step.Kind = graph.KindWorkdir
		countStep()
		var wd string
		wd, err = normalizeWorkdir(st.cfg.WorkingDir, x.Path)
		if err == nil {
			st.cfg.WorkingDir = wd
			st.dir = wd
			step.Workdir = wd
			step.CreatedBy = "WORKDIR " + wd
		}
	case *instructions.EnvCommand:
		parts := []string{"ENV"}
		for _, e := range x.Env {
			parts = append(parts, e.String())
			st.env.set(e.Key, e.Value)
			st.cfg.Env = addEnv(st.cfg.Env, e.Key, e.Value)
		}
		step.CreatedBy = strings.Join(parts, " ")
	case *instructions.LabelCommand:
		parts := []string{"LABEL"}
		if st.cfg.Labels == nil {
			st.cfg.Labels = map[string]string{}
		}
		for _, l := range x.Labels {
			st.cfg.Labels[l.Key] = l.Value
			parts = append(parts, l.String())
		}
		step.CreatedBy = strings.Join(parts, " ")
	case *instructions.MaintainerCommand:
		st.author = x.Maintainer
		step.CreatedBy = "MAINTAINER " + x.Maintainer
	case *instructions.UserCommand:
		st.user = x.User
		st.cfg.User = x.User
		step.CreatedBy = "USER " + x.User
	case *instructions.ExposeCommand:
		var words []string
		for _, p := range x.Ports {
			ws, perr := b.lex.ProcessWords(p, st.env)
			if perr != nil {
				return fail(perr)
			}
			words = append(words, ws...)
		}
		var ports []string
		if ports, err = parsePorts(words); err == nil {
			if st.cfg.ExposedPorts == nil {
				st.cfg.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range ports {
				st.cfg.ExposedPorts[p] = struct{}{}
			}
			step.CreatedBy = fmt.Sprintf("EXPOSE %v", ports)
		}
	case *instructions.VolumeCommand:
		if st.cfg.Volumes == nil {
			st.cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range x.Volumes {
			if v == "" {
				return fail(fmt.Errorf("VOLUME specified can not be an empty string"))
			}
			st.cfg.Volumes[v] = struct{}{}
		}
		step.CreatedBy = fmt.Sprintf("VOLUME %v", x.Volumes)
	case *instructions.StopSignalCommand:
		if !validSignal(x.Signal) {
			return fail(fmt.Errorf("invalid signal: %s", x.Signal))
		}
		st.cfg.StopSignal = x.Signal
		step.CreatedBy = "STOPSIGNAL " + x.Signal
	case *instructions.ShellCommand:
		st.cfg.Shell = cloneStrings(x.Shell)
		step.CreatedBy = fmt.Sprintf("SHELL %v", x.Shell)
	case *instructions.CmdCommand:
		args := x.CmdLine
		if x.PrependShell {
			args = withShell(st.cfg.Shell, args)
		}
		st.cfg.Cmd = args
		//lint:ignore SA1019 Docker still reads it for shell-form CMD, as BuildKit writes it
		st.cfg.ArgsEscaped = true
		st.cmdSet = true
		step.CreatedBy = fmt.Sprintf("CMD %q", args)
	case *instructions.EntrypointCommand:
		args := x.CmdLine
		if x.PrependShell {
			args = withShell(st.cfg.Shell, args)
		}
		st.cfg.Entrypoint = args
		// A new ENTRYPOINT makes an inherited CMD meaningless, unless this stage set CMD itself.
		if !st.cmdSet {
			st.cfg.Cmd = nil
		}
		step.CreatedBy = fmt.Sprintf("ENTRYPOINT %q", args)
	case *instructions.HealthCheckCommand:
		hc := *x.Health
		hc.Test = cloneStrings(x.Health.Test)
		st.cfg.Healthcheck = &hc
		step.CreatedBy = fmt.Sprintf("HEALTHCHECK %+v", hc)
	case *instructions.OnbuildCommand:
		st.cfg.OnBuild = append(st.cfg.OnBuild, x.Expression)
	case *instructions.ArgCommand:
		err = b.dispatchArg(st, x, step)
	default:
		err = fmt.Errorf("unsupported instruction %T", ic)
	}
	if err != nil {
		return fail(err)
	}
	return step, nil
}

// dispatchArg follows BuildKit: a stage ARG takes --build-arg, else its own default (expanded
// in the stage), else the global value of the same name; a value puts it in the environment
// of later instructions.
func (b *builder) dispatchArg(st *state, c *instructions.ArgCommand, step *graph.Step) error {
	var parts []string
	for _, arg := range c.Args {
		bv, hasValue := b.opts.BuildArgs[arg.Key]
		hasDefault := arg.Value != nil
		if !hasDefault && !hasValue {
			if v, ok := b.global.Get(arg.Key); ok {
				arg.Value = &v
			}
		}
		if hasValue {
			arg.Value = &bv
		} else if hasDefault {
			v, _, err := b.lex.ProcessWord(*arg.Value, st.env)
			if err != nil {
				return err
			}
			arg.Value = &v
		}
		if arg.Value != nil && !nonEnvArgs[arg.Key] {
			st.env.set(arg.Key, *arg.Value)
		}
		st.buildArgs = append(st.buildArgs, arg)
		p := arg.Key
		if arg.Value != nil {
			p += "=" + *arg.Value
		}
		parts = append(parts, p)
	}
	step.CreatedBy = "ARG " + strings.Join(parts, " ")
	return nil
}

func (b *builder) dispatchRun(s *stageState, st *state, c *command, x *instructions.RunCommand, step *graph.Step) error {
	op := &graph.RunOp{
		Env:      st.env.slice(),
		User:     st.user,
		Cwd:      st.dir,
		Network:  instructions.GetNetwork(x),
		Security: instructions.GetSecurity(x),
		ProxyEnv: cloneStrings(b.proxyEnv),
		Sandbox:  b.opts.Sandbox,
	}
	args := x.CmdLine
	if len(x.Files) > 0 {
		if len(args) != 1 || !x.PrependShell {
			return fmt.Errorf("parsing produced an invalid run command: %v", args)
		}
		if h := parser.MustParseHeredoc(args[0]); h != nil {
			f := x.Files[0]
			data := f.Data
			if f.Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				// A script with its own interpreter: written out and executed, as BuildKit
				// does through a read-only mount at /dev/pipes.
				name := path.Join("/dev/pipes", f.Name)
				op.Files = append(op.Files, graph.InlineFile{Name: name, Data: data, Chomp: f.Chomp, Mode: 0o755})
				args = []string{name}
			} else {
				// A plain script runs as the shell's command string, so shells without
				// heredoc support still work.
				args = []string{data}
			}
			step.Text += " (" + summarizeHeredoc(f.Data) + ")"
		} else {
			// The command uses heredocs itself (e.g. "cat <<EOF > file"): hand the shell the
			// whole document and let it do the redirection.
			var sb strings.Builder
			sb.WriteString(args[0])
			for _, f := range x.Files {
				sb.WriteByte('\n')
				sb.WriteString(f.Data)
				sb.WriteString(f.Name)
			}
			args = []string{sb.String()}
		}
	}
	if x.PrependShell {
		args = withShell(st.cfg.Shell, args)
	}
	op.Args = args

	sshSock := ""
	for i, m := range instructions.GetMounts(x) {
		gm, err := b.mount(s, st, m, c.sources[i])
		if err != nil {
			return err
		}
		if gm.Type == string(instructions.MountTypeSSH) {
			// BuildKit's LLB numbers a RUN's ssh sockets in order, and the first one is the
			// step's SSH_AUTH_SOCK unless the env already names one.
			if gm.Target == "" {
				gm.Target = fmt.Sprintf("/run/buildkit/ssh_agent.%d", sshCount(op.Mounts))
			}
			if sshSock == "" {
				sshSock = gm.Target
			}
		}
		op.Mounts = append(op.Mounts, gm)
	}
	if _, set := st.env.Get("SSH_AUTH_SOCK"); sshSock != "" && !set {
		op.Env = append(op.Env, "SSH_AUTH_SOCK="+sshSock)
	}
	step.Run = op
	step.CreatedBy = "RUN " + runCommandString(args, st.buildArgs, st.env) + " # buildkit"
	return nil
}

// sshCount is how many ssh mounts come before the next one: its number in the default target.
func sshCount(mounts []*graph.Mount) int {
	n := 0
	for _, m := range mounts {
		if m.Type == string(instructions.MountTypeSSH) {
			n++
		}
	}
	return n
}

// verbatim reports whether the raw lexer would return body unchanged: it has none of the
// characters the lexer acts on ('$', '<', the escape '\\', NUL) and is valid UTF-8 (the scanner
// turns invalid bytes into U+FFFD). Skipping the lexer then saves a rune-by-rune copy of every
// heredoc body, which for a 200 MB body is several times its size in garbage.
func verbatim(body string) bool {
	return !strings.ContainsAny(body, "$<\\\x00") && utf8.ValidString(body)
}

func (b *builder) mount(s *stageState, st *state, m *instructions.Mount, src *srcRef) (*graph.Mount, error) {
	gm := &graph.Mount{
		Type:     string(m.Type),
		Target:   m.Target,
		Source:   m.Source,
		ID:       m.CacheID,
		Sharing:  string(m.CacheSharing),
		ReadOnly: m.ReadOnly,
		Size:     m.SizeLimit,
		Required: m.Required,
	}
	if m.Mode != nil {
		v := uint32(*m.Mode)
		gm.Mode = &v
	}
	if m.UID != nil {
		v := int(*m.UID)
		gm.UID = &v
	}
	if m.GID != nil {
		v := int(*m.GID)
		gm.GID = &v
	}
	if m.Env != nil {
		gm.Env = *m.Env
	}
	switch m.Type {
	case instructions.MountTypeSecret:
		id := m.CacheID
		if m.Source != "" {
			id = m.Source
		}
		if id == "" {
			if m.Target == "" {
				return nil, fmt.Errorf("one of source, target required")
			}
			id = path.Base(m.Target)
		}
		gm.ID = id
		if m.Env == nil && gm.Target == "" {
			gm.Target = "/run/secrets/" + path.Base(id)
		}
		return gm, nil
	case instructions.MountTypeSSH:
		if m.Source != "" {
			return nil, fmt.Errorf("ssh does not support source")
		}
		if gm.ID == "" {
			gm.ID = "default"
		}
		return gm, nil
	}
	if !path.IsAbs(filepath.ToSlash(path.Clean(m.Target))) {
		gm.Target = path.Join("/", st.dir, m.Target)
	}
	if gm.Target == "/" || gm.Target == "" {
		return nil, fmt.Errorf("invalid mount target %q", gm.Target)
	}
	if m.Type == instructions.MountTypeCache {
		if gm.ID == "" {
			gm.ID = path.Clean(m.Target)
		}
		// BuildKit names every cache mount NS/ID; strata's ids stay bare without a namespace so
		// existing caches keep their names.
		if ns := b.opts.BuildArgs["BUILDKIT_CACHE_MOUNT_NS"]; ns != "" {
			gm.ID = ns + "/" + gm.ID
		}
		if gm.Sharing == "" {
			gm.Sharing = string(instructions.MountSharingShared)
		}
	}
	if src != nil && m.Type != instructions.MountTypeTmpfs {
		from, err := b.source(s, src)
		if err != nil {
			if src.stage != nil {
				return nil, fmt.Errorf("cannot mount from stage %q to %q, stage needs to be defined before current command", m.From, m.Target)
			}
			return nil, fmt.Errorf("--mount from=%s: %v", m.From, err)
		}
		gm.From = from
	}
	return gm, nil
}

// source turns a --from / from= reference into a graph.Source; the stage must already be
// dispatched (defined earlier in the Dockerfile), as in BuildKit.
func (b *builder) source(s *stageState, src *srcRef) (*graph.Source, error) {
	if src.stage != nil {
		if src.stage.gs == nil || src.stage.st == nil {
			return nil, fmt.Errorf("stage %q is not defined before stage %q", displayName(src.stage), displayName(s))
		}
		addDep(s.gs, src.stage.gs)
		return &graph.Source{Stage: src.stage.gs}, nil
	}
	ref, ok, err := b.namedContext(src.name)
	if err != nil {
		return nil, err
	}
	if !ok {
		ref = extRef{image: src.name}
	}
	if ref.context != "" {
		return &graph.Source{Context: ref.context}, nil
	}
	ri := b.resolveImage(ref.image, s.platform)
	if ri.err != nil {
		return nil, fmt.Errorf("stage %q not found, and it does not resolve as an image: %v", src.name, ri.err)
	}
	return &graph.Source{Image: ref.image, Digest: ri.digest}, nil
}

func addDep(s, d *graph.Stage) {
	for _, x := range s.Deps {
		if x == d {
			return
		}
	}
	s.Deps = append(s.Deps, d)
}

type copyArgs struct {
	sd       instructions.SourcesAndDest
	add      bool
	chown    string
	chmod    string
	link     bool
	excludes []string
	parents  bool
	checksum string
	unpack   *bool
	keepGit  bool
	// keepGitSet: --keep-git-dir was given (a URL's ?keep-git-dir= must then agree with it)
	keepGitSet bool
}

func (b *builder) dispatchCopy(s *stageState, st *state, c *command, step *graph.Step, a copyArgs) error {
	name := "COPY"
	if a.add {
		name = "ADD"
	}
	op := &graph.CopyOp{
		Dest:     a.sd.DestPath,
		Chown:    canonicalChown(a.chown),
		Chmod:    a.chmod,
		Link:     a.link,
		Parents:  a.parents,
		Excludes: cloneStrings(a.excludes),
		Checksum: a.checksum,
		KeepGit:  a.keepGit,
	}
	if a.chmod != "" {
		if _, err := copier.ParseChmod(a.chmod); err != nil {
			return err
		}
	}
	// No check that several sources go to a directory: BuildKit v0.33.1 copies each to the
	// destination in turn (the last file wins), and so does the copier.
	if a.checksum != "" {
		if !a.add {
			return fmt.Errorf("checksum can't be specified for COPY")
		}
		if len(a.sd.SourcePaths) != 1 {
			return fmt.Errorf("checksum can't be specified for multiple sources")
		}
		if !isHTTPSource(a.sd.SourcePaths[0]) && !isGitSource(a.sd.SourcePaths[0]) {
			return fmt.Errorf("checksum requires HTTP(S) sources")
		}
	}
	if len(c.sources) == 1 {
		from, err := b.source(s, c.sources[0])
		if err != nil {
			if c.sources[0].stage != nil {
				return fmt.Errorf("cannot copy from stage %q, it needs to be defined before current stage %q", displayName(c.sources[0].stage), displayName(s))
			}
			return fmt.Errorf("--from=%s: %v", c.sources[0].name, err)
		}
		op.From = *from
	}
	local := false
	shown := map[string]string{}
	for _, src := range a.sd.SourcePaths {
		switch {
		case isGitSource(src):
			if !a.add {
				return fmt.Errorf("source can't be a git ref for COPY")
			}
			g, err := parseGitSource(src, a)
			if err != nil {
				return err
			}
			op.Git = append(op.Git, g)
			if r := redactUserinfo(src); r != src {
				// The URL's password is shown nowhere: not in progress, errors nor history.
				step.Text = strings.ReplaceAll(step.Text, src, r)
				shown[src] = r
			}
		case isHTTPSource(src):
			if !a.add {
				return fmt.Errorf("source can't be a URL for COPY")
			}
			op.URLs = append(op.URLs, src)
		default:
			local = true
			op.Srcs = append(op.Srcs, src)
		}
	}
	if a.add {
		// Local archives are unpacked unless --unpack=false; remote ones only with --unpack=true.
		op.Unpack = local
		if a.unpack != nil {
			op.Unpack = *a.unpack
		}
	}
	for _, sc := range a.sd.SourceContents {
		op.Files = append(op.Files, graph.InlineFile{Name: sc.Path, Data: sc.Data, Expand: sc.Expand, Mode: 0o644})
	}

	msg := []string{name}
	if a.parents {
		msg = append(msg, "--parents")
	}
	if a.chown != "" {
		msg = append(msg, "--chown="+a.chown)
	}
	if a.chmod != "" {
		msg = append(msg, "--chmod="+a.chmod)
	}
	for _, src := range a.sd.SourcePaths {
		if r, ok := shown[src]; ok {
			src = r
		}
		msg = append(msg, src)
	}
	for _, sc := range a.sd.SourceContents {
		msg = append(msg, "<<"+sc.Path)
	}
	msg = append(msg, a.sd.DestPath)
	step.Copy = op
	step.CreatedBy = strings.Join(msg, " ") + " # buildkit"
	return nil
}

// parseGitSource reads a git ADD source as BuildKit v0.33.1's dockerfile2llb does: the
// #ref:subdir fragment (or ?ref=&subdir=&keep-git-dir=&checksum=&submodules= query), with
// --keep-git-dir and --checksum from the instruction, which must agree with the URL's.
func parseGitSource(src string, a copyArgs) (graph.GitSource, error) {
	ref, isGit, err := dfgitutil.ParseGitRef(src)
	if err != nil {
		return graph.GitSource{}, err
	}
	if !isGit || ref == nil {
		return graph.GitSource{}, fmt.Errorf("not a git source: %s", src)
	}
	g := graph.GitSource{Remote: ref.Remote, Ref: ref.Ref, SubDir: ref.SubDir, KeepGitDir: a.keepGit, Submodules: true, Checksum: a.checksum}
	if ref.KeepGitDir != nil {
		if a.keepGitSet && a.keepGit != *ref.KeepGitDir {
			return graph.GitSource{}, fmt.Errorf("inconsistent keep-git-dir configuration")
		}
		g.KeepGitDir = *ref.KeepGitDir
	}
	if ref.Checksum != "" {
		if a.checksum != "" && a.checksum != ref.Checksum {
			return graph.GitSource{}, fmt.Errorf("checksum mismatch %q != %q", a.checksum, ref.Checksum)
		}
		g.Checksum = ref.Checksum
	}
	if ref.Submodules != nil && !*ref.Submodules {
		g.Submodules = false
	}
	return g, nil
}

// redactUserinfo drops the credentials of a URL source, as the solver's redactURL does.
func redactUserinfo(src string) string {
	u, err := url.Parse(src)
	if err != nil || u.User == nil || u.Scheme == "" {
		return src
	}
	if _, hasPw := u.User.Password(); !hasPw && u.Scheme != "http" && u.Scheme != "https" {
		return src // ssh://git@host: a user name, no secret (an http user may be a token)
	}
	u.User = nil
	return u.String()
}

// canonicalChown spells a lone numeric --chown user as "uid:uid", which is what BuildKit makes of
// it (the group defaults to the same number, see users.Owner), and an empty user or group part
// as 0, which is what BuildKit's llb makes of an empty name (UserOpt.marshal sends ID 0):
// `--chown=${owner}:${group}` with group unset is owner:0 (case copy-chown-expand). The spelling
// is part of the step's cache key, so layers stored when strata read "app:" as app's own group
// are never reused for it.
func canonicalChown(chown string) string {
	if n, err := strconv.ParseInt(chown, 10, 32); err == nil && n >= 0 {
		return chown + ":" + chown
	}
	if u, g, ok := strings.Cut(chown, ":"); ok && (u == "" || g == "") {
		if u == "" {
			u = "0"
		}
		if g == "" {
			g = "0"
		}
		return u + ":" + g
	}
	return chown
}
