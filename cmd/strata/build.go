package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/strata-build/strata/internal/build"
	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/history"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/remotecache"
	"github.com/strata-build/strata/internal/solver"
	"github.com/strata-build/strata/internal/sshagent"
	"github.com/strata-build/strata/internal/store"
)

type buildOpts struct {
	file          string
	tags          []string
	buildArgs     []string
	target        string
	platform      string
	labels        []string
	noCache       bool
	noCacheFilter []string
	pull          bool
	progress      string
	outputs       []string
	push          bool
	load          bool
	iidfile       string
	metadataFile  string
	buildContexts []string
	secrets       []string
	ssh           []string
	allow         []string
	network       string
	runtime       string
	noProcSandbox bool
	compression   string
	insecure      []string
	mirrors       []string
	contextPerms  string
	gcKeepStorage string
	cacheFrom     []string
	cacheTo       []string
	historyKeep   int
	check         bool
	addHosts      []string
	ulimits       []string
	shmSize       string
	quiet         bool
	call          string
	annotations   []string
}

func newBuildCmd(g *globalOpts) *cobra.Command {
	o := &buildOpts{}
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] CONTEXT",
		Short: "Build an image from a Dockerfile",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "file", "f", "", "Dockerfile path (default CONTEXT/Dockerfile; - reads stdin)")
	f.StringArrayVarP(&o.tags, "tag", "t", nil, "name and optionally a tag (name:tag); repeatable")
	f.StringArrayVar(&o.buildArgs, "build-arg", nil, "build-time variable KEY=VALUE (KEY alone takes it from the environment)")
	f.StringVar(&o.target, "target", "", "build this stage")
	f.StringVar(&o.platform, "platform", "", "target platforms, comma-separated (e.g. linux/amd64,linux/arm64)")
	f.StringArrayVar(&o.labels, "label", nil, "image label KEY=VALUE")
	f.BoolVar(&o.noCache, "no-cache", false, "do not use the cache")
	f.StringSliceVar(&o.noCacheFilter, "no-cache-filter", nil, "do not use the cache for these stages")
	f.BoolVar(&o.pull, "pull", false, "resolve base image tags again")
	f.StringVar(&o.progress, "progress", "auto", "progress output: "+progress.Modes+" (auto: tty when stderr is a terminal, else plain; json: one event per line, docs/PROGRESS.md)")
	f.StringArrayVarP(&o.outputs, "output", "o", nil, "output: type=image|oci|docker|registry|local[,dest=…][,tar=false]")
	f.BoolVar(&o.push, "push", false, "push the image to its registry (same as -o type=registry)")
	f.BoolVar(&o.load, "load", false, "also load the image into the Docker or Podman daemon, when one answers (it is always in strata's store)")
	f.StringVar(&o.iidfile, "iidfile", "", "write the image manifest digest to this file")
	f.StringVar(&o.metadataFile, "metadata-file", "", "write build result metadata (JSON) to this file")
	f.StringArrayVar(&o.buildContexts, "build-context", nil, "extra context NAME=DIR|docker-image://REF|oci-layout://PATH")
	f.StringArrayVar(&o.secrets, "secret", nil, "secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR][,type=file|env] (id alone: env var ID if set, else file ID)")
	f.StringArrayVar(&o.ssh, "ssh", nil, "SSH agent for RUN --mount=type=ssh: default|ID[=SOCKET|KEYFILE[,KEYFILE…]] (no path: $SSH_AUTH_SOCK)")
	f.StringArrayVar(&o.allow, "allow", nil, "extra privileges: security.insecure")
	f.StringVar(&o.network, "network", "default", "network for RUN: default (host), host, none")
	f.StringVar(&o.runtime, "runtime", "runc", "OCI runtime for RUN (runc or crun)")
	f.BoolVar(&o.noProcSandbox, "no-process-sandbox", false, "RUN steps share strata's process namespace and see its /proc: for unprivileged containers whose /proc is masked (a RUN step can then see and signal strata's processes)")
	f.StringVar(&o.compression, "compression", "", "layer compression: gzip (default) or zstd")
	f.StringArrayVar(&o.cacheFrom, "cache-from", nil, "import cache: REF, type=registry,ref=REF or type=local,src=DIR; repeatable, searched in order")
	f.StringArrayVar(&o.cacheTo, "cache-to", nil, "export cache: type=registry,ref=REF|type=local,dest=DIR|type=inline[,mode=min|max][,mounts=true][,ignore-error=true]")
	f.StringArrayVar(&o.insecure, "insecure-registry", nil, "registry host allowed over plain HTTP (loopback always is)")
	f.StringArrayVar(&o.mirrors, "registry-mirror", nil, "mirror for docker.io")
	f.StringVar(&o.contextPerms, "context-perms", "keep", "context file permissions in keys and layers: keep, or normalize (0644/0755 like git)")
	f.StringVar(&o.gcKeepStorage, "gc-keep-storage", "", "after the build, collect least recently used cache until the store fits SIZE, or off (default: config gc-keep-storage, else min(10% of disk, 20GB))")
	f.BoolVar(&o.check, "check", false, "first print strata check's findings (with their cost from the build history) as warnings; they never fail the build")
	f.StringArrayVar(&o.addHosts, "add-host", nil, "extra /etc/hosts entry for RUN: HOST:IP (HOST:host-gateway is 127.0.0.1: RUN shares the host's network); repeatable")
	f.StringArrayVar(&o.ulimits, "ulimit", nil, "resource limit for RUN: NAME=SOFT[:HARD], e.g. nofile=1024:2048; repeatable")
	f.StringVar(&o.shmSize, "shm-size", "", "size of /dev/shm in RUN, e.g. 128m (default 64m)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no progress output; print the image ID (config digest) on success")
	f.StringVar(&o.call, "call", "build", "what to do: build, targets (list stages), outline (build args and secrets of the target), check (strata check's findings)")
	f.StringArrayVar(&o.annotations, "annotation", nil, "annotation KEY=VALUE on the image manifest (or [manifest|manifest-descriptor|index|index-descriptor:]KEY=VALUE); repeatable")
	f.IntVar(&o.historyKeep, "history-keep", history.DefaultKeep, "keep the last N builds in the store's history, this one included; 0 keeps none (config file: history-keep)")
	return cmd
}

func runBuild(cmd *cobra.Command, g *globalOpts, o *buildOpts, contextArg string) (retErr error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stderr := cmd.ErrOrStderr()
	if o.quiet && o.progress != "json" {
		o.progress = "quiet" // buildx: -q keeps only the image ID (and the error)
	}
	if o.call != "build" {
		return runCall(cmd, g, o, contextArg)
	}

	prog, err := progress.New(o.progress, stderr)
	if err != nil {
		return err
	}
	// Everything else printed on stderr goes through the renderer, so it neither tears a live
	// frame nor breaks the JSON stream; registered first, this runs after the error report.
	stderr = prog.Writer()
	defer func() {
		prog.Close(retErr)
		var ee *exitError
		if retErr != nil && o.progress == "json" && !errors.As(retErr, &ee) {
			retErr = &exitError{code: 1} // the end event carried it; main's bare line would break the stream
		}
	}()
	bo := build.Options{
		Progress: progress.NewRecorder(prog),
		Warn:     func(s string) { fmt.Fprintf(stderr, "WARNING: %s\n", s) },
		Tags:     o.tags, Target: o.target, NoCache: o.noCache, NoCacheFilter: o.noCacheFilter, Pull: o.pull,
		Network: o.network, Compression: o.compression, NormalizePerms: o.contextPerms == "normalize",
		IIDFile: o.iidfile, MetadataFile: o.metadataFile, Load: o.load,
	}
	if o.platform != "" {
		ps, err := platform.ParseList(o.platform)
		if err != nil {
			return fmt.Errorf("--platform=%s: %w", o.platform, err)
		}
		bo.Platforms = ps
	}
	if o.network != "default" && o.network != "host" && o.network != "none" {
		return fmt.Errorf("--network=%s: use default, host or none", o.network)
	}
	if o.compression != "" && o.compression != "gzip" && o.compression != "zstd" {
		return fmt.Errorf("--compression=%s: use gzip or zstd", o.compression)
	}
	if o.contextPerms != "keep" && o.contextPerms != "normalize" {
		return fmt.Errorf("--context-perms=%s: use keep or normalize", o.contextPerms)
	}
	for _, a := range o.allow {
		if a != "security.insecure" {
			return fmt.Errorf("--allow %s: only security.insecure is supported", a)
		}
		bo.AllowInsecure = true
	}
	if bo.Outputs, err = build.ParseOutputs(o.outputs, o.push); err != nil {
		return err
	}
	if bo.Annotations, err = build.ParseAnnotations(o.annotations); err != nil {
		return err
	}
	for _, s := range o.cacheFrom {
		sp, err := remotecache.ParseSpec(s, false)
		if err != nil {
			return err
		}
		bo.CacheFrom = append(bo.CacheFrom, sp)
	}
	for _, s := range o.cacheTo {
		sp, err := remotecache.ParseSpec(s, true)
		if err != nil {
			return err
		}
		bo.CacheTo = append(bo.CacheTo, sp)
	}

	if bo.ContextDir, err = filepath.Abs(contextArg); err != nil {
		return err
	}
	if st, err := os.Stat(bo.ContextDir); err != nil || !st.IsDir() {
		return fmt.Errorf("build context %s: not a directory", contextArg)
	}
	dfPath := o.file
	if dfPath == "-" {
		if bo.Dockerfile, err = io.ReadAll(cmd.InOrStdin()); err != nil {
			return fmt.Errorf("read Dockerfile from stdin: %w", err)
		}
		dfPath = filepath.Join(bo.ContextDir, "Dockerfile")
	} else {
		if dfPath == "" {
			dfPath = filepath.Join(bo.ContextDir, "Dockerfile")
		}
		if bo.Dockerfile, err = os.ReadFile(dfPath); err != nil {
			return fmt.Errorf("read Dockerfile: %w", err)
		}
	}
	bo.DockerfilePath = dfPath
	bo.Check = o.check
	if bo.BuildArgs, err = parseKVs(o.buildArgs, true, "--build-arg"); err != nil {
		return err
	}
	// buildx and buildctl pass the caller's $SOURCE_DATE_EPOCH on as the build arg unless
	// --build-arg sets it.
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok {
		if _, set := bo.BuildArgs["SOURCE_DATE_EPOCH"]; !set {
			bo.BuildArgs["SOURCE_DATE_EPOCH"] = v
		}
	}
	if bo.Labels, err = parseKVs(o.labels, false, "--label"); err != nil {
		return err
	}
	if bo.Secrets, err = parseSecrets(o.secrets); err != nil {
		return err
	}
	if bo.Sandbox, err = build.ParseSandbox(o.addHosts, o.ulimits, o.shmSize); err != nil {
		return err
	}
	// Loaded here, like the secrets, before setupNamespace covers /dev/shm with a tmpfs of its own.
	var sshSpecs []sshagent.Spec
	for _, s := range o.ssh {
		sp, err := sshagent.ParseSpec(s)
		if err != nil {
			return err
		}
		sshSpecs = append(sshSpecs, sp)
	}
	if bo.SSH, err = sshagent.Load(sshSpecs); err != nil {
		return err
	}
	bo.NamedContexts = map[string]string{}
	for _, bc := range o.buildContexts {
		k, v, ok := strings.Cut(bc, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("--build-context %q: use NAME=DIR|docker-image://REF|oci-layout://PATH", bc)
		}
		if !strings.Contains(v, "://") {
			abs, err := filepath.Abs(v)
			if err != nil {
				return err
			}
			if st, err := os.Stat(abs); err != nil || !st.IsDir() {
				return fmt.Errorf("--build-context %s=%s: not a directory", k, v)
			}
			v = abs
		}
		bo.NamedContexts[k] = v
	}

	rootDir := g.root
	if rootDir == "" {
		rootDir = store.DefaultRoot()
	}
	gcKeep, _, err := gcLimit(o.gcKeepStorage, rootDir)
	if err != nil {
		return err
	}
	if bo.HistoryKeep, err = historyKeep(cmd, o.historyKeep); err != nil {
		return err
	}
	if err := setupNamespace(o.noProcSandbox); err != nil {
		return err
	}
	st, err := store.Open(rootDir, false)
	if err != nil {
		return err
	}
	defer st.Close()
	defer func() {
		if ctx.Err() == nil {
			autoGC(stderr, st, gcKeep, o.progress == "quiet")
		}
	}()
	bo.Store = st
	bo.Runtime = executor.Config{Runtime: o.runtime, StateDir: runcStateDir(), NoProcessSandbox: o.noProcSandbox}
	bo.Registry = registry.Options{Insecure: o.insecure, Mirrors: append(o.mirrors, configMirrors()...)}

	dfName := filepath.Base(dfPath)
	defer func() {
		if retErr != nil {
			retErr = reportError(stderr, dfName, bo.Dockerfile, retErr)
		}
	}()
	res, err := build.Run(ctx, bo)
	prog.Finish(err) // the last frame goes above the error report, with the real error
	if err == nil && o.quiet {
		// buildx prints the image ID, the config digest, as docker images shows it.
		fmt.Fprintln(cmd.OutOrStdout(), res.Image.Config.Digest)
	}
	return err
}

func parseKVs(list []string, fromEnv bool, flag string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("%s %q: use KEY=VALUE", flag, kv)
		}
		if !ok {
			if !fromEnv {
				return nil, fmt.Errorf("%s %q: use KEY=VALUE", flag, kv)
			}
			ev, set := os.LookupEnv(k)
			if !set {
				continue // buildx skips unset variables
			}
			v = ev
		}
		m[k] = v
	}
	return m, nil
}

// maxSecretSize is BuildKit's limit on one secret (secretsprovider.MaxSecretSize).
const maxSecretSize = 500 * 1024

// parseSecrets reads --secret as buildx and BuildKit's secrets provider do: CSV fields
// id=, src=|source=, env=, type=file|env (type=env takes src= as the variable's name); with
// neither src nor env, the variable named like the id if it is set, else the file named like
// it. A variable that is not set is a secret that was not given: a RUN that requires it fails,
// others run without it.
func parseSecrets(list []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, s := range list {
		if s == "" {
			continue
		}
		fields, err := csv.NewReader(strings.NewReader(s)).Read()
		if err != nil {
			return nil, fmt.Errorf("--secret %q: %w", s, err)
		}
		var id, src, env, typ string
		for _, f := range fields {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("--secret %q: field %q must be KEY=VALUE", s, f)
			}
			switch strings.ToLower(k) {
			case "type":
				if v != "file" && v != "env" {
					return nil, fmt.Errorf("--secret %q: type=%s: use file or env", s, v)
				}
				typ = v
			case "id":
				id = v
			case "src", "source":
				src = v
			case "env":
				env = v
			default:
				return nil, fmt.Errorf("--secret %q: unknown key %q (id, src, env, type)", s, k)
			}
		}
		if typ == "env" && env == "" {
			env, src = src, ""
		}
		if id == "" {
			return nil, fmt.Errorf("--secret %q: missing id=", s)
		}
		if env == "" && src == "" {
			if _, ok := os.LookupEnv(id); ok {
				env = id
			} else {
				src = id
			}
		}
		if src != "" {
			st, err := os.Stat(src)
			if err != nil {
				return nil, fmt.Errorf("--secret id=%s: %w", id, err)
			}
			if st.Size() > maxSecretSize {
				return nil, fmt.Errorf("--secret id=%s: %s is %d bytes, over the 500KiB a secret may hold", id, src, st.Size())
			}
			data, err := os.ReadFile(src)
			if err != nil {
				return nil, fmt.Errorf("--secret id=%s: %w", id, err)
			}
			out[id] = data
			continue
		}
		if v, ok := os.LookupEnv(env); ok {
			out[id] = []byte(v)
		}
	}
	return out, nil
}

// configMirrors reads docker.io mirrors from $STRATA_CONFIG or /etc/strata/config.json
// ({"registry-mirrors": ["https://mirror.example"]}, the same key as Docker's daemon.json).
func configMirrors() []string {
	c, _ := loadConfig()
	return c.Mirrors
}

// reportError prints the error last, with the Dockerfile lines it concerns, and turns it into an
// exit code so main does not print it again.
func reportError(w io.Writer, name string, df []byte, err error) error {
	line := 0
	var se *solver.StepError
	var fe *dockerfile.Error
	switch {
	case errors.As(err, &se):
		line = se.Line
	case errors.As(err, &fe):
		line = fe.Line
	}
	msg := err.Error()
	if line > 0 && !strings.HasPrefix(msg, name+":") {
		msg = fmt.Sprintf("%s:%d: %s", name, line, msg)
	}
	fmt.Fprintf(w, "\nERROR: %s\n", msg)
	if line > 0 {
		first := max(1, line-2)
		if lines := linesOf(df, first, line+1); len(lines) > line-first {
			fmt.Fprintln(w, "--------------------")
			for j, text := range lines {
				i := first + j
				mark := "  "
				if i == line {
					mark = ">>>"
				}
				if len(text) > 200 { // a generated line can be megabytes long
					text = text[:200] + fmt.Sprintf("… (%d bytes)", len(text))
				}
				fmt.Fprintf(w, " %3d | %s %s\n", i, mark, text)
			}
			fmt.Fprintln(w, "--------------------")
		}
	}
	return &exitError{code: 1}
}

// linesOf is lines first..last (1-based, as many as df has) of df, found in place: the
// Dockerfile can hold hundreds of MB of heredocs, and a copy split into lines would cost more.
func linesOf(df []byte, first, last int) []string {
	var out []string
	for n := 1; n <= last; n++ {
		end := bytes.IndexByte(df, '\n')
		if end < 0 {
			end = len(df)
		}
		if n >= first {
			out = append(out, string(df[:end]))
		}
		if end == len(df) {
			break
		}
		df = df[end+1:]
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
