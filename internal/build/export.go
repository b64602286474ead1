package build

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/remotecache"
	"github.com/strata-build/strata/internal/solver"
	"github.com/strata-build/strata/internal/store"
)

func exportAll(ctx context.Context, rec *progress.Recorder, st *store.Store, reg *registry.Client, f *remotecache.Fetcher, img *image.Image, layers []store.Layer, outs []Output, tags []string) error {
	// A push mounts or streams layers that live in a repository; a layer known only from a local
	// cache directory is fetched into the store first.
	remoteOf := map[digest.Digest]string{}
	var local []store.Layer
	for _, l := range layers {
		if remotecache.IsRepository(l.Remote) {
			remoteOf[l.Digest] = l.Remote // mounted from there, even when the store has the bytes
		} else if l.Remote != "" && !st.Has(l.Digest) {
			local = append(local, l)
		}
	}
	// fetchAll brings lazy layers in for outputs that need every byte.
	fetchAll := func() error {
		for _, l := range layers {
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
			return err
		}
		switch out.Type {
		case "image":
			v := rec.Start("exporting to image")
			v.Status("writing image %s done", img.Manifest.Digest)
			for _, n := range names {
				if err = st.Tag(n, img.Manifest.Digest); err != nil {
					break
				}
				v.Status("naming to %s done", n)
			}
			finish(v, err)
		case "oci", "docker":
			v := rec.Start(fmt.Sprintf("exporting to %s image format", out.Type))
			if err = fetchAll(); err == nil {
				err = writeArchive(st, img, out, names)
			}
			if err == nil {
				v.Status("writing %s done", out.Dest)
			}
			finish(v, err)
		case "registry":
			v := rec.Start(fmt.Sprintf("pushing %v", names))
			for _, l := range local {
				if err = f.Fetch(ctx, l); err != nil {
					break
				}
			}
			if err == nil {
				err = reg.Push(ctx, img, st, names, func(d digest.Digest) string { return remoteOf[d] }, func(d ocispec.Descriptor, done, total int64) {
					if done == total {
						v.Status("pushing %s %d/%d bytes done", d.Digest.Encoded()[:12], done, total)
					}
				})
			}
			finish(v, err)
		case "local":
			v := rec.Start("copying files to " + out.Dest)
			if err = fetchAll(); err == nil {
				err = solver.WriteFilesystem(st, layers, out.Dest)
			}
			finish(v, err)
		}
		if err != nil {
			return fmt.Errorf("output type=%s: %w", out.Type, err)
		}
	}
	return nil
}

func normalizeNames(tags, override []string) ([]string, error) {
	src := tags
	if len(override) > 0 {
		src = override
	}
	var names []string
	for _, t := range src {
		n, err := solver.NormalizeRef(t)
		if err != nil {
			return nil, fmt.Errorf("-t %s: %w", t, err)
		}
		names = append(names, n)
	}
	return names, nil
}

func finish(v *progress.Vertex, err error) {
	if err != nil {
		v.Fail(err)
		return
	}
	v.Done()
}

// writeArchive writes an OCI or docker archive; the file appears only complete.
func writeArchive(st *store.Store, img *image.Image, out Output, names []string) error {
	if out.Type == "oci" && !out.Tar {
		return export.WriteOCIDir(out.Dest, img, st, names)
	}
	write := func(w io.Writer) error {
		if out.Type == "docker" {
			return export.WriteDockerArchive(w, img, st, names)
		}
		return export.WriteOCIArchive(w, img, st, names)
	}
	if out.Dest == "-" {
		return write(os.Stdout)
	}
	// A kill leaves no partial archive behind (an unnamed O_TMPFILE, or a named partial the next
	// export to the same place sweeps).
	return export.WriteFile(out.Dest, 0o644, write)
}
