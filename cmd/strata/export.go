package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/solver"
	"github.com/strata-build/strata/internal/store"
)

func exportAll(ctx context.Context, rec *progress.Recorder, st *store.Store, reg *registry.Client, res *solver.Result, outs []output, tags []string) error {
	img := res.Image
	var names []string
	for _, t := range tags {
		n, err := solver.NormalizeRef(t)
		if err != nil {
			return fmt.Errorf("-t %s: %w", t, err)
		}
		names = append(names, n)
	}
	for _, out := range outs {
		var err error
		switch out.typ {
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
			v := rec.Start(fmt.Sprintf("exporting to %s image format", out.typ))
			err = writeArchive(st, img, out, names)
			if err == nil {
				v.Status("writing %s done", out.dest)
			}
			finish(v, err)
		case "registry":
			v := rec.Start("pushing " + fmt.Sprint(names))
			err = reg.Push(ctx, img, st, names, func(d ocispec.Descriptor, done, total int64) {
				if done == total {
					v.Status("pushing %s %d/%d bytes done", d.Digest.Encoded()[:12], done, total)
				}
			})
			finish(v, err)
		case "local":
			v := rec.Start("copying files to " + out.dest)
			err = solver.WriteFilesystem(st, res.Layers, out.dest)
			finish(v, err)
		}
		if err != nil {
			return fmt.Errorf("output type=%s: %w", out.typ, err)
		}
	}
	return nil
}

func finish(v *progress.Vertex, err error) {
	if err != nil {
		v.Fail(err)
		return
	}
	v.Done()
}

// writeArchive writes an OCI or docker archive; the file appears only complete.
func writeArchive(st *store.Store, img *imageT, out output, names []string) error {
	if out.typ == "oci" && !out.tar {
		return export.WriteOCIDir(out.dest, img, st, names)
	}
	write := func(w io.Writer) error {
		if out.typ == "docker" {
			return export.WriteDockerArchive(w, img, st, names)
		}
		return export.WriteOCIArchive(w, img, st, names)
	}
	if out.dest == "-" {
		return write(os.Stdout)
	}
	dir := filepath.Dir(out.dest)
	f, err := os.CreateTemp(dir, ".strata-out-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	os.Chmod(f.Name(), 0o644)
	return os.Rename(f.Name(), out.dest)
}
