package build

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/registry"
	"github.com/strata-build/strata/internal/remotecache"
	"github.com/strata-build/strata/internal/solver"
	"github.com/strata-build/strata/internal/store"
)

func exportAll(ctx context.Context, rec *progress.Recorder, st *store.Store, reg *registry.Client, f *remotecache.Fetcher, img *image.Image, layers []store.Layer, outs []Output, tags []string, sp stamping) (*image.Image, error) {
	// An output with rewrite-timestamp=true gets the image whose new layers are re-timed; it is
	// made once, when the first such output needs it, and is then what the build reports.
	plain, plainLayers := img, layers
	var stamped, reported *image.Image
	var stampedLayers []store.Layer
	for _, out := range outs {
		names, err := normalizeNames(tags, out.Names)
		if err != nil {
			return nil, err
		}
		img, layers := plain, plainLayers
		if out.RewriteTimestamp && sp.epoch != nil {
			if stamped == nil {
				v := rec.Start(fmt.Sprintf("rewriting layers with source-date-epoch %d (%s)", sp.epoch.Unix(), sp.epoch.UTC().Format(time.RFC3339)))
				stamped, stampedLayers, err = sp.rewrite(ctx, st, f, plain, plainLayers)
				finish(v, err)
				if err != nil {
					return nil, fmt.Errorf("output type=%s,rewrite-timestamp=true: %w", out.Type, err)
				}
			}
			img, layers = stamped, stampedLayers
		}
		if len(out.manifestAnn)+len(out.descriptorAnn) > 0 {
			if img, err = image.Annotate(img, out.manifestAnn, out.descriptorAnn, st.WriteBlob); err != nil {
				return nil, fmt.Errorf("output type=%s: annotations: %w", out.Type, err)
			}
			if reported == nil {
				reported = img // --iidfile and the metadata name the annotated manifest, as BuildKit's
			}
		}
		// A push mounts or streams layers that live in a repository; a layer known only from a
		// local cache directory is fetched into the store first.
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
				meter := v.ByteMeter(100 * time.Millisecond)
				err = reg.Push(ctx, img, st, names, func(d digest.Digest) string { return remoteOf[d] }, func(d ocispec.Descriptor, done, total int64) {
					meter(d.Digest.String(), done, total)
					if done == total {
						v.Status("pushing %s %d/%d bytes done", d.Digest.Encoded()[:12], done, total)
					}
				})
			}
			finish(v, err)
		case "local":
			v := rec.Start("copying files to " + out.Dest)
			if err = fetchAll(); err == nil {
				var root string
				var unmount func()
				if root, unmount, err = solver.MountLayers(st, layers); err == nil {
					err = export.WriteLocal(root, out.Dest)
					unmount()
				}
			}
			finish(v, err)
		}
		if err != nil {
			return nil, fmt.Errorf("output type=%s: %w", out.Type, err)
		}
	}
	if reported != nil {
		return reported, nil
	}
	if stamped != nil {
		return stamped, nil
	}
	return plain, nil
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
	// export to the same place sweeps). An archive already holding exactly these bytes (the same
	// image and tags: archives are reproducible) is left as it is.
	tail, err := export.ArchiveTail(img, names, out.Type == "docker")
	if err != nil {
		return err
	}
	_, err = export.WriteFileIfChanged(out.Dest, 0o644, tail, write, st)
	return err
}

// stamping is what SOURCE_DATE_EPOCH asks of the outputs: with rewrite-timestamp=true, the file
// times in the layers the build made are clamped to the epoch, as BuildKit does.
//
// The clamp happens here, at export, not when a step commits its layer. A layer's ContentID (and
// so every cache key above it) leaves timestamps out, so a layer committed with clamped times
// would have the same ContentID as the unclamped one: a record made by a build without the
// epoch would hand its unclamped layer to a build with it, or the key would have to carry the
// epoch and every step would miss when the epoch moves. Clamping the finished layers keeps the
// cache records and keys exactly as they are with or without SOURCE_DATE_EPOCH; the clamped
// copy is a layer of its own (its own diffID and blob, the same ContentID), remembered under a
// record keyed by the original diffID, the epoch and the media type (see rewriteKey), so a
// cached rebuild reuses it instead of recompressing.
type stamping struct {
	epoch *time.Time
	// base lists the diffIDs of the image at the bottom of the target's FROM chain: like
	// BuildKit, the leading layers equal to the base's are the base's and are never rewritten.
	base []digest.Digest
}

// newStamping reads SOURCE_DATE_EPOCH from the build args (where the CLI also puts the
// environment's, as buildx does) and checks the outputs against it.
func newStamping(o Options, b *graph.Build) (stamping, error) {
	epoch, err := sourceDateEpoch(o.BuildArgs)
	if err != nil {
		return stamping{}, err
	}
	rewrite := false
	for _, out := range o.Outputs {
		rewrite = rewrite || out.RewriteTimestamp
	}
	if rewrite && epoch == nil {
		o.Warn("rewrite-timestamp=true is set, but SOURCE_DATE_EPOCH is not: the layers keep their file times")
	}
	if rewrite && epoch != nil {
		for _, sp := range o.CacheTo {
			if sp.Type == "inline" {
				return stamping{}, errors.New("--cache-to type=inline with rewrite-timestamp=true: the inline cache would name the layers as built, which the re-timed image does not carry; use --cache-to type=registry")
			}
		}
	}
	sp := stamping{epoch: epoch}
	if b != nil && b.Target != nil {
		root := b.Target
		for root.Base.Stage != nil {
			root = root.Base.Stage
		}
		if root.Base.Image != "" && root.Base.Context == "" {
			sp.base = root.Base.Config.RootFS.DiffIDs
		}
	}
	return sp, nil
}

// sourceDateEpoch parses SOURCE_DATE_EPOCH, seconds since 1970 as BuildKit reads it. "context"
// is BuildKit's request to take the time from a git or HTTP context; a local context has none,
// so BuildKit then leaves the epoch unset, and so does strata.
func sourceDateEpoch(args map[string]string) (*time.Time, error) {
	v := args["SOURCE_DATE_EPOCH"]
	if v == "" || v == "context" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("invalid SOURCE_DATE_EPOCH %q: want seconds since 1970 (a stage or named context as the source is not supported)", v)
	}
	t := time.Unix(n, 0).UTC()
	if t.Year() < 0 || t.Year() > 9999 {
		// An image config cannot carry such a date (RFC 3339 has four-digit years).
		return nil, fmt.Errorf("invalid SOURCE_DATE_EPOCH %q: not between years 0 and 9999", v)
	}
	return &t, nil
}

// rewrite returns img with every layer above the base re-timed (see stamping), and its layers.
// The config keeps everything but the diffIDs; the solver already dated its history and created
// time by the epoch.
func (sp stamping) rewrite(ctx context.Context, st *store.Store, f *remotecache.Fetcher, img *image.Image, layers []store.Layer) (*image.Image, []store.Layer, error) {
	out := append([]store.Layer(nil), layers...)
	first := len(layers) // the first layer that is not the base's
	for i, l := range layers {
		if first == len(layers) && i < len(sp.base) && sp.base[i] == l.DiffID {
			continue
		}
		if first == len(layers) {
			first = i
		}
		nl, err := rewriteLayer(ctx, st, f, l, *sp.epoch)
		if err != nil {
			return nil, nil, fmt.Errorf("layer %d (%s): %w", i+1, l.DiffID, err)
		}
		out[i] = nl
	}
	if first == len(layers) {
		return img, layers, nil
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(img.ConfigBytes, &cfg); err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", img.Config.Digest, err)
	}
	rootfs := ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}}
	for _, l := range out {
		rootfs.DiffIDs = append(rootfs.DiffIDs, l.DiffID)
	}
	rb, err := json.Marshal(rootfs)
	if err != nil {
		return nil, nil, err
	}
	cfg["rootfs"] = rb
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(img.ManifestBytes, &m); err != nil {
		return nil, nil, fmt.Errorf("manifest %s: %w", img.Manifest.Digest, err)
	}
	if len(m.Layers) != len(out) {
		return nil, nil, fmt.Errorf("manifest %s has %d layers, the build %d", img.Manifest.Digest, len(m.Layers), len(out))
	}
	// Like BuildKit, every layer past the base says which epoch it was rewritten to, also one
	// that had no later time in it.
	for i := first; i < len(out); i++ {
		m.Layers[i].Digest, m.Layers[i].Size = out[i].Digest, out[i].Size
		if m.Layers[i].Annotations == nil {
			m.Layers[i].Annotations = map[string]string{}
		}
		m.Layers[i].Annotations[annotationRewrittenTimestamp] = strconv.FormatInt(sp.epoch.Unix(), 10)
	}
	cd, err := st.WriteBlob(cb)
	if err != nil {
		return nil, nil, err
	}
	m.Config.Digest, m.Config.Size = cd, int64(len(cb))
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, nil, err
	}
	md, err := st.WriteBlob(mb)
	if err != nil {
		return nil, nil, err
	}
	return &image.Image{
		Manifest:      ocispec.Descriptor{MediaType: img.Manifest.MediaType, Digest: md, Size: int64(len(mb))},
		ManifestBytes: mb,
		Config:        m.Config,
		ConfigBytes:   cb,
		Layers:        m.Layers,
	}, out, nil
}

// annotationRewrittenTimestamp marks a re-timed layer in the manifest, as BuildKit marks it.
const annotationRewrittenTimestamp = "buildkit/rewritten-timestamp"

// rewriteKeyVersion is hashed into rewriteKey, so a change in how layers are rewritten never
// reuses a copy made the old way.
const rewriteKeyVersion = "strata.rewrite-timestamp.v1"

// rewriteKey names the re-timed copy of a layer: it is a pure function of the layer's tar
// (diffID), the epoch and the compression, so the record is as trustworthy as the store.
func rewriteKey(diffID digest.Digest, epoch time.Time, mediaType string) string {
	h := sha256.Sum256([]byte(rewriteKeyVersion + "\x00" + diffID.String() + "\x00" + strconv.FormatInt(epoch.Unix(), 10) + "\x00" + mediaType))
	return hex.EncodeToString(h[:])
}

// rewriteLayer returns l with every time later than epoch set to epoch: a new layer (same
// ContentID, new diffID and blob) recorded in the store, or l itself when nothing was later.
func rewriteLayer(ctx context.Context, st *store.Store, f *remotecache.Fetcher, l store.Layer, epoch time.Time) (store.Layer, error) {
	key := rewriteKey(l.DiffID, epoch, l.MediaType)
	if rec, err := st.GetRecord(key); err == nil && !rec.Empty {
		if nl, err := st.GetLayer(rec.Layer); err == nil && st.Available(nl) {
			return nl, nil
		}
	}
	if !st.Has(l.Digest) {
		if f == nil || l.Remote == "" {
			return store.Layer{}, fmt.Errorf("blob %s is not in the store", l.Digest)
		}
		if err := f.Fetch(ctx, l); err != nil {
			return store.Layer{}, err
		}
	}
	rc, err := st.Open(l.Digest)
	if err != nil {
		return store.Layer{}, err
	}
	defer rc.Close()
	tr, err := openLayer(rc, l.MediaType)
	if err != nil {
		return store.Layer{}, err
	}
	defer tr.Close()
	bw, err := st.NewBlobWriter()
	if err != nil {
		return store.Layer{}, err
	}
	defer bw.Abort()
	// The same compression as the layer's, with writers whose output is a function of the tar,
	// so the rewritten blob is as reproducible as a built one. A rewrite is done once per layer
	// and epoch (then remembered), so gzip is one pgzip stream, not members (internal/layerblob):
	// there is no earlier blob of it to copy from.
	var cw io.WriteCloser
	switch l.MediaType {
	case ocispec.MediaTypeImageLayerGzip, image.MediaTypeDockerLayerGzip:
		cw = pgzip.NewWriter(bw)
	case ocispec.MediaTypeImageLayerZstd:
		zw, err := zstd.NewWriter(bw)
		if err != nil {
			return store.Layer{}, err
		}
		cw = zw
	case ocispec.MediaTypeImageLayer:
		cw = nopCloser{bw}
	default:
		return store.Layer{}, fmt.Errorf("cannot rewrite a layer of media type %s", l.MediaType)
	}
	dh := sha256.New()
	if err := clampTar(tr, io.MultiWriter(cw, dh), epoch); err != nil {
		cw.Close()
		return store.Layer{}, err
	}
	if err := cw.Close(); err != nil {
		return store.Layer{}, fmt.Errorf("compress: %w", err)
	}
	diffID := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(dh.Sum(nil)))
	nl := l
	if diffID != l.DiffID {
		blob, size, err := bw.Commit()
		if err != nil {
			return store.Layer{}, err
		}
		nl = store.Layer{DiffID: diffID, Digest: blob, MediaType: l.MediaType, Size: size, ContentID: l.ContentID}
		if err := st.PutLayer(nl); err != nil {
			return store.Layer{}, err
		}
	}
	rec := &store.Record{Key: key, Step: fmt.Sprintf("rewrite-timestamp %d of %s", epoch.Unix(), l.DiffID), Layer: nl.DiffID, Size: nl.Size, Created: time.Now().UTC().Truncate(time.Second)}
	if err := st.PutRecord(rec); err != nil {
		return store.Layer{}, err
	}
	return nl, nil
}

// clampTar copies a layer tar from r to w with modification, access and change times later than
// epoch set to epoch (what BuildKit's rewrite-timestamp does), re-encoding each header the way
// snapshot.Diff writes them (PAX), so the output depends only on the entries, not on how the
// input was encoded.
func clampTar(r io.Reader, w io.Writer, epoch time.Time) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	tr := tar.NewReader(r)
	tw := tar.NewWriter(bw)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		for _, t := range []*time.Time{&hdr.ModTime, &hdr.AccessTime, &hdr.ChangeTime} {
			if t.After(epoch) {
				*t = epoch
			}
		}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// openLayer decompresses a layer blob by its leading bytes (gzip, zstd or a plain tar).
func openLayer(r io.Reader, mediaType string) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(4)
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gunzip %s layer: %w", mediaType, err)
		}
		return zr, nil
	case len(head) >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("unzstd %s layer: %w", mediaType, err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
