// Package build is strata's build flow as a library: options in, image out. It parses the
// Dockerfile, imports remote caches, solves, exports the outputs and the caches, and writes the
// result files. The CLI only turns flags into Options and calls Run.
package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/check"
	"github.com/strata-build/strata/internal/contenthash"
	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/remotecache"
	"github.com/strata-build/strata/internal/solver"
	"github.com/strata-build/strata/internal/sshagent"
	"github.com/strata-build/strata/internal/store"
)

// Options is one build.
type Options struct {
	Store    *store.Store
	Progress *progress.Recorder
	// Warn receives one-line warnings (a cache that could not be imported, …).
	Warn func(string)

	ContextDir     string
	Dockerfile     []byte
	DockerfilePath string            // where the Dockerfile lives (its .dockerignore sits beside it)
	NamedContexts  map[string]string // name → DIR, docker-image://REF or oci-layout://PATH

	Tags      []string
	BuildArgs map[string]string
	Labels    map[string]string
	Target    string
	Platform  ocispec.Platform

	NoCache       bool
	NoCacheFilter []string
	Pull          bool

	Outputs []Output
	// Annotations (--annotation) go on every image output, before the output's own.
	Annotations []Annotation
	Load        bool // --load: also load the image into a Docker or Podman daemon, when one answers
	CacheFrom   []remotecache.Spec
	CacheTo     []remotecache.Spec

	Secrets        map[string][]byte
	SSH            *sshagent.Agents // --ssh: agents for RUN --mount=type=ssh (nil: none)
	AllowInsecure  bool
	Network        string
	Sandbox        graph.Sandbox // --add-host, --ulimit, --shm-size: every RUN gets them
	Runtime        executor.Config
	Compression    string // "" = from an output or cache attribute, else gzip
	NormalizePerms bool

	Registry registry.Options

	IIDFile      string
	MetadataFile string

	HistoryKeep int // builds the store's history keeps, this one included: 0 = history.DefaultKeep, < 0 = none

	Check bool // first warn of strata check's findings, priced from the store's history (--check)
}

// Result is a finished build.
type Result struct {
	Image *image.Image
	Steps []solver.StepResult
	// Bytes moved to and from registries (layers, configs and cache blobs; manifests excluded).
	Registry registry.Stats
}

// Run builds, exports and records. Errors that concern a Dockerfile line are *solver.StepError
// or *dockerfile.Error.
func Run(ctx context.Context, o Options) (built *Result, err error) {
	h := startHistory(ctx, o)
	defer h.finish(&built, &err)
	if o.Warn == nil {
		o.Warn = func(string) {}
	}
	if o.Check && o.Store != nil {
		check.Preflight(check.Options{Path: o.DockerfilePath, Dockerfile: o.Dockerfile, Context: o.ContextDir}, o.Store.Root(), o.Warn)
	}
	compression, err := pickCompression(o)
	if err != nil {
		return nil, err
	}
	for _, out := range o.Outputs {
		if out.Type == "registry" && len(o.Tags) == 0 && len(out.Names) == 0 {
			return nil, errors.New("pushing needs a name: add -t REGISTRY/NAME:TAG")
		}
	}
	if err := buildkitArgs(&o); err != nil {
		return nil, err
	}
	o.Outputs = slices.Clone(o.Outputs)
	for i, out := range o.Outputs {
		if out.Type == "local" || out.Type == "tar" {
			continue
		}
		out.Annotations = append(slices.Clone(o.Annotations), out.Annotations...)
		if out.manifestAnn, out.descriptorAnn, err = annotationsFor(out.Annotations, o.Platform, "--output type="+out.Type); err != nil {
			return nil, err
		}
		o.Outputs[i] = out
	}
	if o.Load {
		lp, lerr := planLoad(ctx, &o, findDaemon)
		if lerr != nil {
			return nil, lerr
		}
		if lp != nil {
			defer lp.cleanup()
			defer func() {
				if err == nil {
					err = lp.load(ctx, o.Progress)
				}
			}()
		}
	}
	// A bad name fails now, not after every step has run.
	if _, err := normalizeNames(o.Tags, nil); err != nil {
		return nil, err
	}
	for _, out := range o.Outputs {
		for _, n := range out.Names {
			if _, err := solver.NormalizeRef(n); err != nil {
				return nil, fmt.Errorf("--output type=%s: name=%s: %w", out.Type, n, err)
			}
		}
	}
	named := map[string]string{}
	namedDirs := map[string]string{}
	for k, v := range o.NamedContexts {
		k = strings.ToLower(k)
		named[k] = v
		if !strings.Contains(v, "://") {
			namedDirs[k] = v
		}
	}
	rec := o.Progress
	st := o.Store
	ro := o.Registry
	if ro.Platform.OS == "" {
		ro.Platform = o.Platform
	}
	reg := registry.New(ro)
	fetcher := &remotecache.Fetcher{Registry: reg, Store: st}
	resolver := &solver.Resolver{Store: st, Registry: reg, Progress: rec, Pull: o.Pull}

	// The cache manifests are read while the Dockerfile is parsed and its base images resolved:
	// both are a few registry round trips, and neither needs the other.
	var imported chan struct{}
	var importedIndex *remotecache.Index
	if len(o.CacheFrom) > 0 && !o.NoCache {
		imported = make(chan struct{})
		go func() {
			defer close(imported)
			v := rec.Start("importing cache manifest from " + specNames(o.CacheFrom))
			var warnings []string
			importedIndex, warnings = remotecache.Import(ctx, o.CacheFrom, fetcher)
			for _, w := range warnings {
				o.Warn(w)
			}
			v.Status("%d records", importedIndex.Len())
			v.Done()
		}()
	}

	dfName := filepath.Base(o.DockerfilePath)
	v := rec.Start("[internal] load build definition from " + dfName)
	b, err := dockerfile.Parse(ctx, dockerfile.Options{
		Dockerfile: o.Dockerfile, Filename: dfName, BuildArgs: o.BuildArgs, Target: o.Target,
		Platform: o.Platform, Labels: o.Labels, NamedContexts: named, Resolver: resolver,
		Sandbox: o.Sandbox,
	})
	if err != nil {
		if imported != nil {
			<-imported
		}
		v.Fail(err)
		return nil, err
	}
	v.Done()
	for _, w := range b.Warnings {
		o.Warn(w)
	}
	stamp, err := newStamping(o, b)
	if err != nil {
		return nil, err
	}

	var remote *remotecache.Index
	if imported != nil {
		<-imported
		remote = importedIndex
	}
	mounts := remotecache.NewMountSet(st, remote, fetcher)
	defer mounts.Release()

	ignore, err := contenthash.ReadDockerignore(o.ContextDir, o.DockerfilePath)
	if err != nil {
		return nil, err
	}
	scPath := st.StatCachePath(o.ContextDir)
	sc, _ := contenthash.LoadStatCache(scPath)

	sopts := solver.Options{
		Store: st, Images: resolver, Progress: rec,
		ContextDir: o.ContextDir, NamedContexts: namedDirs, Ignore: ignore, StatCache: sc,
		NoCache: o.NoCache, NoCacheFilter: o.NoCacheFilter, NormalizePerms: o.NormalizePerms,
		Runtime: o.Runtime, Network: o.Network, Secrets: o.Secrets, SSH: o.SSH, AllowInsecure: o.AllowInsecure,
		Compression: compression, Position: o.DockerfilePath + "|" + o.Target, PortablePosition: portablePosition(o),
		Fetch: fetcher.Fetch, FetchStream: fetcher.FetchStream, CacheMount: mounts.Dir,
	}
	if remote != nil {
		sopts.Remote = remote
	}
	sopts.SourceDateEpoch = stamp.epoch
	// Uploads that start during the build stop with it if it fails.
	upCtx, stopUploads := context.WithCancel(ctx)
	defer reg.Wait()
	defer stopUploads()
	if pp := newPrepush(upCtx, reg, st, b, o.Outputs, o.Tags, o.CacheTo); pp != nil {
		sopts.StepDone = pp.stepDone
	}
	sopts.StepDone = h.watch(b, sopts.StepDone)
	res, err := solver.Solve(ctx, b, sopts)
	if sc != nil {
		if err := sc.Save(scPath); err != nil {
			o.Warn(fmt.Sprintf("stat cache not saved: %v", err))
		}
	}
	if err != nil {
		return nil, err
	}
	img := res.Image
	for _, sp := range o.CacheTo {
		if sp.Type == "inline" {
			if img, err = withInlineCache(st, img, append(entries(b, res.Steps, "min"), remotecache.SelectionEntries(res.Selections)...)); err != nil {
				return nil, fmt.Errorf("--cache-to type=inline: %w", err)
			}
		}
	}
	// The image and the caches go out at the same time: they share most blobs, and each blob is
	// sent (or found present) once for both. Caches go out one after the other: they share the
	// cache-mount set.
	var cacheErr error
	cacheDone := make(chan struct{})
	go func() {
		defer close(cacheDone)
		for _, sp := range o.CacheTo {
			if sp.Type == "inline" {
				continue
			}
			if cacheErr = exportCache(ctx, rec, sp, append(entries(b, res.Steps, sp.Mode), remotecache.SelectionEntries(res.Selections)...), mounts, fetcher, o.Warn); cacheErr != nil {
				return
			}
		}
	}()
	img, err = exportAll(ctx, rec, st, reg, fetcher, img, res.Layers, o.Outputs, o.Tags, stamp)
	<-cacheDone
	if err != nil {
		return nil, err
	}
	if cacheErr != nil {
		return nil, cacheErr
	}
	out := &Result{Image: img, Steps: res.Steps, Registry: reg.Stats()}
	if t := out.Registry; t.Pulled+t.Pushed > 0 || len(o.CacheFrom)+len(o.CacheTo) > 0 {
		v := rec.Start("[internal] registry transfer")
		v.Status("layer and cache bytes pulled %s, pushed %s", humanBytes(t.Pulled), humanBytes(t.Pushed))
		v.Done()
	}
	if err := writeResultFiles(o, out); err != nil {
		return nil, err
	}
	return out, nil
}

func pickCompression(o Options) (string, error) {
	c := o.Compression
	from := "--compression"
	check := func(v, where string) error {
		if v == "" {
			return nil
		}
		if c == "" {
			c, from = v, where
			return nil
		}
		if c != v {
			return fmt.Errorf("%s asks for compression=%s but %s for %s: layers are compressed once, so use one", where, v, from, c)
		}
		return nil
	}
	for _, out := range o.Outputs {
		if err := check(out.Compression, "--output type="+out.Type); err != nil {
			return "", err
		}
	}
	for _, sp := range o.CacheTo {
		if err := check(sp.Compression, "--cache-to "+sp.String()); err != nil {
			return "", err
		}
	}
	switch c {
	case "":
		return "gzip", nil
	case "gzip", "zstd":
		return c, nil
	}
	return "", fmt.Errorf("--compression=%s: use gzip or zstd", c)
}

func specNames(specs []remotecache.Spec) string {
	var n []string
	for _, s := range specs {
		n = append(n, s.String())
	}
	return strings.Join(n, ", ")
}

// entries picks the step results a cache export carries: mode=max every step built; mode=min the
// steps whose layers make up the exported image (the target stage and the stages it starts FROM).
func entries(b *graph.Build, steps []solver.StepResult, mode string) []remotecache.Entry {
	inImage := map[*graph.Stage]bool{}
	for st := b.Target; st != nil; st = st.Base.Stage {
		inImage[st] = true
	}
	var out []remotecache.Entry
	for _, s := range steps {
		if s.Record == nil || (mode != "max" && !inImage[s.Node]) {
			continue
		}
		out = append(out, remotecache.Entry{Record: *s.Record, Layer: s.Layer, Position: s.Position, Inputs: s.Inputs})
	}
	return out
}

// exportCache writes one --cache-to; a failure is a warning with ignore-error=true.
func exportCache(ctx context.Context, rec *progress.Recorder, sp remotecache.Spec, es []remotecache.Entry, mounts *remotecache.MountSet, f *remotecache.Fetcher, warn func(string)) error {
	v := rec.Start(fmt.Sprintf("exporting cache to %s (mode=%s)", sp, sp.Mode))
	err := remotecache.Export(ctx, sp, es, mounts, f, warn, nil)
	if err == nil {
		v.Done()
		return nil
	}
	err = fmt.Errorf("--cache-to %s: %w", sp, err)
	if sp.IgnoreError {
		v.Status("failed, ignored (ignore-error=true)")
		v.Done()
		warn(err.Error())
		return nil
	}
	v.Fail(err)
	return err
}

// writeResultFiles writes --iidfile and --metadata-file.
func writeResultFiles(o Options, r *Result) error {
	if o.IIDFile != "" {
		if err := os.WriteFile(o.IIDFile, []byte(r.Image.Manifest.Digest.String()), 0o644); err != nil {
			return fmt.Errorf("--iidfile: %w", err)
		}
	}
	if o.MetadataFile != "" {
		md := map[string]any{
			"containerimage.digest":        r.Image.Manifest.Digest.String(),
			"containerimage.config.digest": r.Image.Config.Digest.String(),
			"containerimage.descriptor":    r.Image.Manifest,
			"strata.bytes.pulled":          r.Registry.Pulled,
			"strata.bytes.pushed":          r.Registry.Pushed,
		}
		cached, total := 0, 0
		for _, s := range r.Steps {
			total++
			if s.Cached {
				cached++
			}
		}
		md["strata.steps"] = map[string]int{"total": total, "cached": cached}
		if len(o.Tags) > 0 {
			md["image.name"] = strings.Join(o.Tags, ",")
		}
		data, _ := json.MarshalIndent(md, "", "  ")
		if err := os.WriteFile(o.MetadataFile, data, 0o644); err != nil {
			return fmt.Errorf("--metadata-file: %w", err)
		}
	}
	return nil
}

// withInlineCache returns img with the records of its own steps in its config (InlineKey), so
// --cache-from IMAGE can read them back; the layers are the image's.
func withInlineCache(st *store.Store, img *image.Image, es []remotecache.Entry) (*image.Image, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(img.ConfigBytes, &cfg); err != nil {
		return nil, err
	}
	c := remotecache.BuildConfig(es, nil)
	data, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	cfg[remotecache.InlineKey] = data
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return image.Rewrite(img, cb, st.WriteBlob)
}

// portablePosition names the Dockerfile the same way on every machine: relative to the context
// when it lies inside, else by its base name.
func portablePosition(o Options) string {
	name := filepath.Base(o.DockerfilePath)
	if rel, err := filepath.Rel(o.ContextDir, o.DockerfilePath); err == nil && !strings.HasPrefix(rel, "..") {
		name = filepath.ToSlash(rel)
	}
	return name + "|" + o.Target
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2fGB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fkB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
