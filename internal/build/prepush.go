package build

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/remotecache"
	"github.com/strata-build/strata/internal/solver"
	"github.com/strata-build/strata/internal/store"
)

// prepush sends each step's layer to the registries the build will push to (the image's
// repositories, registry caches) as soon as the step is done, while later steps still run: at the
// end only configs and manifests are left, and a layer the registry already has costs one HEAD
// that no longer waits for the build. Only layers the exports will name are sent: those of the
// stages in the image (and, for a mode=max cache, of every stage).
type prepush struct {
	ctx     context.Context
	reg     *registry.Client
	st      *store.Store
	inImage map[*graph.Stage]bool
	image   []string // image references to push to
	caches  []remotecache.Spec
}

func newPrepush(ctx context.Context, reg *registry.Client, st *store.Store, b *graph.Build, outs []Output, tags []string, caches []remotecache.Spec) *prepush {
	p := &prepush{ctx: ctx, reg: reg, st: st, inImage: map[*graph.Stage]bool{}}
	for s := b.Target; s != nil; s = s.Base.Stage {
		p.inImage[s] = true
	}
	for _, out := range outs {
		// A re-timed image (rewrite-timestamp) pushes copies of the new layers, made at the end.
		if out.Type != "registry" || out.RewriteTimestamp {
			continue
		}
		if names, err := normalizeNames(tags, out.Names); err == nil {
			p.image = append(p.image, names...)
		}
	}
	for _, sp := range caches {
		if sp.Type == "registry" {
			p.caches = append(p.caches, sp)
		}
	}
	if len(p.image)+len(p.caches) == 0 {
		return nil
	}
	return p
}

// stepDone is solver.Options.StepDone.
func (p *prepush) stepDone(r solver.StepResult) {
	l := r.Layer
	if l == nil {
		return
	}
	b := registry.Blob{Descriptor: ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}}
	if remotecache.IsRepository(l.Remote) {
		b.Remote = l.Remote
	} else if !p.st.Has(l.Digest) {
		return // bytes in a cache directory: the export reads them in first
	}
	if p.inImage[r.Node] {
		for _, ref := range p.image {
			p.reg.Preupload(p.ctx, ref, b, p.st)
		}
	}
	for _, sp := range p.caches {
		if sp.Mode == "max" || p.inImage[r.Node] {
			p.reg.Preupload(p.ctx, sp.Ref, b, p.st)
		}
	}
}
