// Package graph holds the build graph the frontend produces and the solver walks: stages and their
// fully expanded steps. It does no I/O, so both sides can be tested without a filesystem.
package graph

import (
	"strconv"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Build is what the frontend hands the solver: only the stages the target needs, in an order where
// every stage comes after the stages it reads from.
type Build struct {
	Stages   []*Stage
	Target   *Stage
	Platform ocispec.Platform // TARGETPLATFORM: what the image's config names
	// Warnings are problems BuildKit reports without failing ("Dockerfile:3: DuplicateStageName:
	// …"), for the build flow to show.
	Warnings []string
}

// Stage is one FROM block.
type Stage struct {
	Index int    // position in the Dockerfile (0-based), as `--from=0` names it
	Name  string // lower-cased AS name, or "" when unnamed
	// Platform is what the stage's base is pulled for and its RUN steps execute as: the build's
	// target platform, or FROM --platform's (e.g. $BUILDPLATFORM for a cross-compiling stage).
	Platform ocispec.Platform
	Base     Base
	Steps    []*Step
	// Config is the image config after the last step (base image config included). The solver adds
	// the layer-dependent parts (rootfs, history, created time) as it runs.
	Config dockerspec.DockerOCIImageConfig
	Deps   []*Stage // stages this one reads (base, COPY --from, RUN --mount from)
	// Author is the image author (base image's, or MAINTAINER's); it lives outside Config in the
	// image spec.
	Author string
	// Total is BuildKit's progress denominator for the stage: RUN/COPY/ADD/WORKDIR steps (ONBUILD
	// triggers included) plus 1 when FROM pulls an image, which progress shows as [1/Total].
	Total int
}

// DisplayName is how progress names the stage: its name, or "stage-N".
func (s *Stage) DisplayName() string {
	if s.Name != "" {
		return s.Name
	}
	return "stage-" + strconv.Itoa(s.Index)
}

// Base is where a stage starts: an image, an earlier stage, or nothing.
type Base struct {
	Scratch bool
	Stage   *Stage
	Image   string // reference as written after ARG expansion, e.g. "127.0.0.1:5000/busybox:latest"
	// Digest and Config are filled in by the frontend's resolver: the manifest digest the image
	// reference resolved to, and its config, so ENV/WORKDIR/ONBUILD of the base are honoured.
	Digest string
	Config dockerspec.DockerOCIImage
	// Context, when set, names a --build-context directory that replaces the stage entirely
	// (FROM or stage name overridden by a local named context): the stage's filesystem is that
	// directory's contents and it has no steps.
	Context string
	Line    int
	Text    string // the FROM instruction as written, for progress
}

// Kind says what a step does to the filesystem.
type Kind string

const (
	KindRun     Kind = "RUN"
	KindCopy    Kind = "COPY"
	KindAdd     Kind = "ADD"
	KindWorkdir Kind = "WORKDIR" // creates the directory; usually an empty layer
	KindMeta    Kind = "META"    // ENV, LABEL, USER, CMD…: changes the config only
)

// Step is one instruction, fully expanded: it carries everything that affects its result, so the
// solver's cache key can be computed from the step and its inputs alone.
type Step struct {
	Stage *Stage
	// Pos is the step's number in BuildKit's "[stage i/n]" progress (n = Stage.Total): only
	// RUN/COPY/ADD/WORKDIR are counted, and an image FROM takes [1/n], so the first step after
	// it is 2. KindMeta steps carry 0: BuildKit does not show them.
	Pos  int
	Line int    // first Dockerfile line of the instruction
	Text string // instruction as displayed in progress, e.g. "RUN npm ci"
	Kind Kind

	Run     *RunOp
	Copy    *CopyOp
	Workdir string // KindWorkdir: absolute directory to create

	// State the step runs in (after USER/WORKDIR before it; a RUN's env is in RunOp, the only
	// place it is read: a copy on every step would cost memory quadratic in the ENV lines).
	User string
	Dir  string

	// CreatedBy is the image history entry, shaped like BuildKit's ("RUN /bin/sh -c make # buildkit").
	// Empty means no history entry (BuildKit records none for ONBUILD).
	CreatedBy string
}

// RunOp is a RUN instruction after shell-form wrapping and heredoc handling.
type RunOp struct {
	Args     []string
	Env      []string // effective env: image ENV plus build args in scope, KEY=VALUE
	User     string
	Cwd      string
	Network  string // "default", "none" or "host"
	Security string // "sandbox" or "insecure"
	Mounts   []*Mount
	// ProxyEnv holds HTTP_PROXY-style build args (KEY=VALUE, sorted). They are set in the
	// container but, as in BuildKit, belong in neither the cache key nor the history.
	ProxyEnv []string
	// Files are heredoc bodies the command reads, written into a tmpfs before it runs.
	Files []InlineFile
	// Sandbox is what the build's options, not the instruction, set for every RUN.
	Sandbox Sandbox
}

// Sandbox is the container setup a build applies to all its RUN steps (--add-host, --ulimit,
// --shm-size, BUILDKIT_SANDBOX_HOSTNAME). BuildKit carries each in the ExecOp's meta, so each
// changes the step's key: a RUN that reads /etc/hosts or its limits must not hit a record made
// under other ones. The zero value is the default sandbox.
type Sandbox struct {
	Hostname   string // "" = buildkitsandbox
	ExtraHosts []Host // appended to /etc/hosts in this order
	Ulimits    []Ulimit
	ShmSize    int64 // bytes of the /dev/shm tmpfs; 0 = the default 64 MiB
}

// IsZero reports whether s is the default sandbox: keys of steps that use it stay as they were
// before these options existed.
func (s Sandbox) IsZero() bool {
	return s.Hostname == "" && len(s.ExtraHosts) == 0 && len(s.Ulimits) == 0 && s.ShmSize == 0
}

// Host is one extra /etc/hosts entry.
type Host struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
}

// Ulimit is one resource limit, named as in `ulimit`/Docker (nofile, nproc, …); -1 is unlimited.
type Ulimit struct {
	Name string `json:"name"`
	Soft int64  `json:"soft"`
	Hard int64  `json:"hard"`
}

// Mount is a RUN --mount.
type Mount struct {
	Type     string // bind, cache, tmpfs, secret, ssh
	Target   string
	Source   string
	From     *Source // bind/cache: where Source is read from; nil = build context (bind) or empty (cache)
	ID       string  // cache/secret/ssh id
	Sharing  string  // shared, private, locked
	ReadOnly bool
	Mode     *uint32
	UID, GID *int
	Size     int64 // tmpfs bytes, 0 = default
	Required bool
	Env      string // secret: expose as env var
}

// Source names where COPY/ADD/--mount read from.
type Source struct {
	Context string // "" = main build context; otherwise a named --build-context
	Stage   *Stage
	Image   string // COPY --from=image:tag
	Digest  string // manifest digest Image resolved to (filled by the frontend's resolver)
}

// IsContext reports whether the source is a context directory rather than a stage or image.
func (s Source) IsContext() bool { return s.Stage == nil && s.Image == "" }

// CopyOp is COPY or ADD.
type CopyOp struct {
	From     Source
	Srcs     []string    // as written (after ARG/ENV expansion); relative to the source root
	URLs     []string    // ADD https://…
	Git      []GitSource // ADD of a git repository (git://, git@…, https://….git#ref:subdir)
	Checksum string      // ADD --checksum
	Files    []InlineFile
	Dest     string // as written, expanded; relative dests are resolved against Dir by the copier
	Chown    string
	Chmod    string
	Link     bool
	Parents  bool
	Excludes []string
	Unpack   bool // ADD: local tar archives are extracted
	KeepGit  bool
}

// GitSource is a git repository ADD copies, as BuildKit's dfgitutil.ParseGitRef reads it.
type GitSource struct {
	Remote     string // the repository URL without the fragment (may hold credentials: never key or log it)
	Ref        string // branch, tag, full ref or commit; "" = the remote's HEAD
	SubDir     string // the directory of the checkout that is copied; "" = all of it
	KeepGitDir bool   // keep .git (ADD --keep-git-dir=true)
	Submodules bool   // check submodules out too (the default; ?submodules=false skips them)
	Checksum   string // the commit the ref must resolve to (ADD --checksum or ?checksum=)
}

// InlineFile is a heredoc body. Data is final: chomping (<<-) and variable expansion have
// already been applied; Chomp and Expand only record how the heredoc was written.
type InlineFile struct {
	Name   string // RUN: absolute path to write (e.g. /dev/pipes/EOF); COPY: file name
	Data   string
	Chomp  bool
	Expand bool
	Mode   uint32 // 0 means 0644
}
