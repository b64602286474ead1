package build

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/remotecache"
	"github.com/strata-build/strata/internal/solver"
	"github.com/strata-build/strata/internal/store"
)

// checkMultiOutputs refuses, before anything runs, the outputs that cannot hold several
// platforms.
func checkMultiOutputs(o Options) error {
	for _, out := range o.Outputs {
		if out.Type == "docker" {
			return errors.New("--output type=docker holds one platform, and several are being built: use type=oci, type=image or --push, or build one --platform")
		}
		if out.RewriteTimestamp {
			return fmt.Errorf("--output type=%s,rewrite-timestamp=true is not supported with several platforms yet: build one --platform per output", out.Type)
		}
	}
	return nil
}

// exportIndex writes the outputs of a multi-platform build: one OCI image index naming each
// platform's image (the index entry carries the platform, as the image's config does).
// type=local writes each platform's filesystem into DEST/<os>_<arch>[_<variant>], as buildx does.
func exportIndex(ctx context.Context, rec *progress.Recorder, st *store.Store, reg *registry.Client, f *remotecache.Fetcher, images []*image.Image, layers [][]store.Layer, plats []ocispec.Platform, outs []Output, tags []string) (*image.Image, error) {
	idx, err := image.NewIndex(images, st.WriteBlob)
	if err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	var all []store.Layer
	for _, ls := range layers {
		all = append(all, ls...)
	}
	fetchAll := func() error {
		for _, l := range all {
			if !st.Has(l.Digest) {
				if err := f.Fetch(ctx, l); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, out := range outs {
		names, err := normalizeNames(tags, out.Names)
		if err != nil {
			return nil, err
		}
		switch out.Type {
		case "image":
			v := rec.Start("exporting to image")
			v.Status("writing image index %s (%d platforms) done", idx.Manifest.Digest, len(images))
			for _, n := range names {
				if err = st.Tag(n, idx.Manifest.Digest); err != nil {
					break
				}
				v.Status("naming to %s done", n)
			}
			finish(v, err)
		case "oci":
			v := rec.Start("exporting to oci image format")
			if err = fetchAll(); err == nil {
				err = writeArchive(st, idx, out, names)
			}
			if err == nil {
				v.Status("writing %s done", out.Dest)
			}
			finish(v, err)
		case "registry":
			v := rec.Start(fmt.Sprintf("pushing %v", names))
			err = pushIndex(ctx, st, reg, f, idx, all, names, v)
			finish(v, err)
		case "local":
			v := rec.Start("copying files to " + out.Dest)
			if err = fetchAll(); err == nil {
				for i, ls := range layers {
					dest := filepath.Join(out.Dest, strings.ReplaceAll(platform.Format(plats[i]), "/", "_"))
					var root string
					var unmount func()
					if root, unmount, err = solver.MountLayers(st, ls); err != nil {
						break
					}
					err = export.WriteLocal(root, dest)
					unmount()
					if err != nil {
						break
					}
				}
			}
			finish(v, err)
		}
		if err != nil {
			return nil, fmt.Errorf("output type=%s: %w", out.Type, err)
		}
	}
	return idx, nil
}

// pushIndex pushes each platform's image by digest, then the index under the names: a registry
// accepts an index only once the manifests it names are there.
func pushIndex(ctx context.Context, st *store.Store, reg *registry.Client, f *remotecache.Fetcher, idx *image.Image, layers []store.Layer, names []string, v *progress.Vertex) error {
	remoteOf := map[digest.Digest]string{}
	for _, l := range layers {
		if remotecache.IsRepository(l.Remote) {
			remoteOf[l.Digest] = l.Remote
		} else if l.Remote != "" && !st.Has(l.Digest) {
			if err := f.Fetch(ctx, l); err != nil {
				return err
			}
		}
	}
	for _, child := range idx.Children {
		var refs []string
		for _, n := range names {
			named, err := reference.ParseNormalizedNamed(n)
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
			byDigest, err := reference.WithDigest(reference.TrimNamed(named), child.Manifest.Digest)
			if err != nil {
				return err
			}
			refs = append(refs, byDigest.String())
		}
		err := reg.Push(ctx, child, st, refs, func(d digest.Digest) string { return remoteOf[d] }, func(d ocispec.Descriptor, done, total int64) {
			if done == total {
				v.Status("pushing %s %d/%d bytes done", d.Digest.Encoded()[:12], done, total)
			}
		})
		if err != nil {
			return err
		}
	}
	return reg.PushManifest(ctx, names, idx.Manifest.MediaType, idx.ManifestBytes, nil, st, nil)
}
