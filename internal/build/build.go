// Package build is strata's build flow as a library: options in, image out. It parses the
// Dockerfile, imports remote caches, solves, exports the outputs and the caches, and writes the
// result files. The CLI only turns flags into Options and calls Run.
package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/opencontainers/go-digest"
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
	"github.com/strata-build/strata/internal/platform"
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
	// Platforms are the --platform targets: one image each, several make an OCI image index.
	// Empty means the host's platform.
	Platforms []ocispec.Platform

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
	// Image is the built image; with several platforms, their OCI image index (Image.Children).
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
	annPlat := platform.Host()
	if len(o.Platforms) > 0 {
		annPlat = o.Platforms[0]
	}
	o.Outputs = slices.Clone(o.Outputs)
	for i, out := range o.Outputs {
		if out.Type == "local" || out.Type == "tar" {
			continue
		}
		out.Annotations = append(slices.Clone(o.Annotations), out.Annotations...)
		if len(o.Platforms) > 1 && len(out.Annotations) > 0 {
			return nil, fmt.Errorf("--output type=%s: annotations on a multi-platform build are not supported yet; build one platform at a time to annotate it", out.Type)
		}
		if out.manifestAnn, out.descriptorAnn, err = annotationsFor(out.Annotations, annPlat, "--output type="+out.Type); err != nil {
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
	plats := o.Platforms
	if len(plats) == 0 {
		plats = []ocispec.Platform{platform.Host()}
	}
	multi := len(plats) > 1
	if multi {
		if err := checkMultiOutputs(o); err != nil {
			return nil, err
		}
	}
	ro := o.Registry
	if ro.Platform.OS == "" {
		ro.Platform = plats[0]
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
	waitImport := func() {
		if imported != nil {
			<-imported
		}
	}

	// Each platform is parsed on its own: TARGETPLATFORM and the bases differ.
	dfName := filepath.Base(o.DockerfilePath)
	builds := make([]*graph.Build, len(plats))
	warned := map[string]bool{}
	for i, p := range plats {
		name := "[internal] load build definition from " + dfName
		if multi {
			name += " for " + platform.Format(p)
		}
		v := rec.Start(name)
		b, err := dockerfile.Parse(ctx, dockerfile.Options{
			Dockerfile: o.Dockerfile, Filename: dfName, BuildArgs: o.BuildArgs, Target: o.Target,
			Platform: p, Labels: o.Labels, NamedContexts: named, Resolver: resolver,
			Sandbox: o.Sandbox,
		})
		if err != nil {
			waitImport()
			v.Fail(err)
			return nil, err
		}
		v.Done()
		// Most warnings are the same for every platform; a base image of the wrong platform
		// is one platform's.
		for _, w := range b.Warnings {
			if !warned[w] {
				warned[w] = true
				o.Warn(w)
			}
		}
		builds[i] = b
	}
	stamp, err := newStamping(o, builds[0])
	if err != nil {
		return nil, err
	}

	waitImport()
	remote := importedIndex
	mounts := remotecache.NewMountSet(st, remote, fetcher)
	defer mounts.Release()

	ignore, err := contenthash.ReadDockerignore(o.ContextDir, o.DockerfilePath)
	if err != nil {
		return nil, err
	}
	scPath := st.StatCachePath(o.ContextDir)
	sc, _ := contenthash.LoadStatCache(scPath)

	// Uploads that start during the build stop with it if it fails.
	upCtx, stopUploads := context.WithCancel(ctx)
	defer reg.Wait()
	defer stopUploads()

	// solveAndExport runs the build once. Run calls it again when a lazy layer's blob turns out
	// to be gone from the cache that was to serve it (see forgetGone).
	solveAndExport := func() (img *image.Image, steps []solver.StepResult, err error) {
		// The platforms are solved one after the other, in one store: a stage they share (FROM
		// --platform=$BUILDPLATFORM without TARGET args) has the same keys for each, so it runs for
		// the first and is a cache hit for the others.
		var solved []*solver.Result
		var images []*image.Image
		cacheEntries := map[string][]remotecache.Entry{}
		selections := map[string]store.SelectionMemo{}
		builtKeys := &solver.BuiltKeys{}
		for i, b := range builds {
			p := plats[i]
			sopts := solver.Options{
				Store: st, Images: resolver, Progress: rec,
				ContextDir: o.ContextDir, NamedContexts: namedDirs, Ignore: ignore, StatCache: sc,
				NoCache: o.NoCache, NoCacheFilter: o.NoCacheFilter, NormalizePerms: o.NormalizePerms,
				Runtime: o.Runtime, Network: o.Network, Secrets: o.Secrets, SSH: o.SSH, AllowInsecure: o.AllowInsecure,
				Compression: compression, Position: o.DockerfilePath + "|" + o.Target + positionPlatform(p),
				PortablePosition: portablePosition(o) + positionPlatform(p),
				Fetch:            fetcher.Fetch, FetchStream: fetcher.FetchStream, CacheMount: mounts.Dir,
				LabelPlatforms: multi, Built: builtKeys,
			}
			if remote != nil {
				sopts.Remote = remote
			}
			sopts.SourceDateEpoch = stamp.epoch
			if pp := newPrepush(upCtx, reg, st, b, o.Outputs, o.Tags, o.CacheTo); pp != nil {
				sopts.StepDone = pp.stepDone
			}
			sopts.StepDone = h.watch(b, sopts.StepDone)
			res, err := solver.Solve(ctx, b, sopts)
			if err != nil {
				if sc != nil {
					_ = sc.Save(scPath, st.Scratch())
				}
				return nil, nil, err
			}
			img := res.Image
			for _, sp := range o.CacheTo {
				if sp.Type == "inline" {
					if img, err = withInlineCache(st, img, append(entries(b, res.Steps, "min"), remotecache.SelectionEntries(res.Selections)...)); err != nil {
						return nil, nil, fmt.Errorf("--cache-to type=inline: %w", err)
					}
				}
			}
			for _, mode := range []string{"min", "max"} {
				cacheEntries[mode] = append(cacheEntries[mode], entries(b, res.Steps, mode)...)
			}
			for k, m := range res.Selections {
				selections[k] = m
			}
			solved = append(solved, res)
			images = append(images, img)
			steps = append(steps, res.Steps...)
		}
		if sc != nil {
			if err := sc.Save(scPath, st.Scratch()); err != nil {
				o.Warn(fmt.Sprintf("stat cache not saved: %v", err))
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
				mode := "min"
				if sp.Mode == "max" {
					mode = "max"
				}
				if cacheErr = exportCache(ctx, rec, sp, append(cacheEntries[mode], remotecache.SelectionEntries(selections)...), mounts, fetcher, o.Warn); cacheErr != nil {
					return
				}
			}
		}()
		if multi {
			var layers [][]store.Layer
			for _, r := range solved {
				layers = append(layers, r.Layers)
			}
			img, err = exportIndex(ctx, rec, st, reg, fetcher, images, layers, plats, o.Outputs, o.Tags)
		} else {
			img, err = exportAll(ctx, rec, st, reg, fetcher, images[0], solved[0].Layers, o.Outputs, o.Tags, stamp)
		}
		<-cacheDone
		if err != nil {
			return nil, nil, err
		}
		if cacheErr != nil {
			return nil, nil, cacheErr
		}
		return img, steps, nil
	}
	var img *image.Image
	var steps []solver.StepResult
	forgotten := map[digest.Digest]bool{}
	for {
		mark := h.mark()
		img, steps, err = solveAndExport()
		if !forgetGone(err, st, remote, fetcher, forgotten, o.Warn) {
			break
		}
		h.truncate(mark)
	}
	if err != nil {
		return nil, err
	}
	out := &Result{Image: img, Steps: steps, Registry: reg.Stats()}
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

// maxForget bounds the layers one build forgets for blobs gone from its caches (see forgetGone):
// each attempt forgets at least one new layer, so a build makes at most this many attempts more.
const maxForget = 32

// forgetGone decides whether a failed attempt is worth another: when err is a lazy layer's blob
// that its cache no longer has, it forgets that layer and every other the attempt found gone
// (the store's lazy copy and the records naming it, and the imported cache's records), so the
// steps that made them run again, and reports true. A blob forgotten once already (a base image's
// layer gone from its repository, which no step makes again) ends the retries with the error.
func forgetGone(err error, st *store.Store, remote *remotecache.Index, f *remotecache.Fetcher, forgotten map[digest.Digest]bool, warn func(string)) bool {
	found := f.TakeGone()
	var gone *remotecache.BlobGoneError
	if err == nil || !errors.As(err, &gone) {
		return false
	}
	const advice = "a layer's blob is gone from the registry that was to serve it: build with --no-cache, or without that --cache-from, and export the cache again with --cache-to"
	if gone.DiffID == "" || forgotten[gone.Digest] || len(forgotten) >= maxForget {
		warn(advice)
		return false
	}
	again := false
	for _, g := range append(found, *gone) {
		if g.DiffID == "" || forgotten[g.Digest] {
			continue
		}
		forgotten[g.Digest] = true
		n := remote.Forget(g.Digest)
		m, ferr := st.ForgetLayer(g.DiffID)
		if ferr != nil {
			warn(fmt.Sprintf("cache blob %s is gone, and forgetting it failed: %v", g.Digest, ferr))
			return false
		}
		if n+m > 0 {
			again = true
			warn(fmt.Sprintf("cache blob %s is gone from %s (deleted since the cache was exported): running again the steps that made it", g.Digest, g.Remote))
		}
	}
	if !again {
		warn(advice)
	}
	return again
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
			"containerimage.digest":     r.Image.Manifest.Digest.String(),
			"containerimage.descriptor": r.Image.Manifest,
			"strata.bytes.pulled":       r.Registry.Pulled,
			"strata.bytes.pushed":       r.Registry.Pushed,
		}
		if len(r.Image.Children) == 0 {
			md["containerimage.config.digest"] = r.Image.Config.Digest.String()
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

// positionPlatform keeps the miss-reason history of each platform apart; the host's platform adds
// nothing, so single-platform builds keep the positions they always had.
func positionPlatform(p ocispec.Platform) string {
	if platform.Equal(p, platform.Host()) {
		return ""
	}
	return "|" + platform.Format(p)
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
