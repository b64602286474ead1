package build

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/remotecache"
	"github.com/strata-build/strata/internal/store"
)

var testEpoch = time.Unix(1700000000, 0).UTC()

// SOURCE_DATE_EPOCH is seconds since 1970, as BuildKit reads it; "context" names a git or HTTP
// context's time, which a local context does not have.
func TestSourceDateEpoch(t *testing.T) {
	for _, c := range []struct {
		v    string
		want *time.Time
	}{
		{"", nil},
		{"context", nil},
		{"1700000000", &testEpoch},
		{"0", func() *time.Time { t := time.Unix(0, 0).UTC(); return &t }()},
	} {
		got, err := sourceDateEpoch(map[string]string{"SOURCE_DATE_EPOCH": c.v})
		if err != nil {
			t.Errorf("SOURCE_DATE_EPOCH=%q: %v", c.v, err)
			continue
		}
		if (got == nil) != (c.want == nil) || (got != nil && !got.Equal(*c.want)) {
			t.Errorf("SOURCE_DATE_EPOCH=%q: got %v, want %v", c.v, got, c.want)
		}
	}
	if got, err := sourceDateEpoch(nil); got != nil || err != nil {
		t.Errorf("no SOURCE_DATE_EPOCH: %v, %v", got, err)
	}
	for _, v := range []string{"yesterday", "1.5", "99999999999999"} {
		if _, err := sourceDateEpoch(map[string]string{"SOURCE_DATE_EPOCH": v}); err == nil || !strings.Contains(err.Error(), `SOURCE_DATE_EPOCH "`+v+`"`) {
			t.Errorf("SOURCE_DATE_EPOCH=%s: error %v", v, err)
		}
	}
}

// rewrite-timestamp is an attribute of BuildKit's image exporters (image, registry, oci, docker),
// not of local.
func TestParseOutputsRewriteTimestamp(t *testing.T) {
	for _, spec := range []string{"type=image,rewrite-timestamp=true", "type=registry,rewrite-timestamp=true", "type=oci,dest=o.tar,rewrite-timestamp=true", "type=docker,dest=d.tar,rewrite-timestamp=true"} {
		outs, err := ParseOutputs([]string{spec}, false)
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		if len(outs) != 1 || !outs[0].RewriteTimestamp {
			t.Errorf("%s: %+v", spec, outs)
		}
	}
	outs, err := ParseOutputs([]string{"type=oci,dest=o.tar,rewrite-timestamp=false"}, false)
	if err != nil || len(outs) != 1 || outs[0].RewriteTimestamp {
		t.Errorf("rewrite-timestamp=false: %+v, %v", outs, err)
	}
	for spec, want := range map[string]string{
		"type=local,dest=out,rewrite-timestamp=true": `unknown attribute "rewrite-timestamp" for type=local`,
		"type=oci,dest=o.tar,rewrite-timestamp=yes":  "rewrite-timestamp=yes: use true or false",
	} {
		if _, err := ParseOutputs([]string{spec}, false); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", spec, err, want)
		}
	}
}

// A rewrite with an inline cache would leave the cache naming layers the image lacks.
func TestStampingRefusesInlineCache(t *testing.T) {
	o := Options{
		BuildArgs: map[string]string{"SOURCE_DATE_EPOCH": "1700000000"},
		Outputs:   []Output{{Type: "registry", RewriteTimestamp: true}},
		Warn:      func(string) {},
	}
	inline, err := remotecache.ParseSpec("type=inline", true)
	if err != nil {
		t.Fatal(err)
	}
	o.CacheTo = append(o.CacheTo, inline)
	if _, err := newStamping(o, nil); err == nil || !strings.Contains(err.Error(), "type=inline") {
		t.Errorf("rewrite-timestamp with --cache-to type=inline: %v", err)
	}
	var warned []string
	o = Options{Outputs: []Output{{Type: "oci", RewriteTimestamp: true}}, Warn: func(s string) { warned = append(warned, s) }}
	sp, err := newStamping(o, nil)
	if err != nil || sp.epoch != nil || len(warned) != 1 {
		t.Errorf("rewrite-timestamp without SOURCE_DATE_EPOCH: %+v, %v, warnings %q", sp, err, warned)
	}
}

// The base layers are those of the image at the bottom of the target's FROM chain.
func TestStampingBase(t *testing.T) {
	base := []digest.Digest{digest.FromString("a"), digest.FromString("b")}
	root := &graph.Stage{Base: graph.Base{Image: "busybox"}}
	root.Base.Config.RootFS.DiffIDs = base
	tgt := &graph.Stage{Base: graph.Base{Stage: root}}
	sp, err := newStamping(Options{BuildArgs: map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}}, &graph.Build{Target: tgt})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sp.base, base) || sp.epoch == nil || !sp.epoch.Equal(testEpoch) {
		t.Errorf("stamping %+v", sp)
	}
	sp, _ = newStamping(Options{}, &graph.Build{Target: &graph.Stage{Base: graph.Base{Scratch: true}}})
	if sp.base != nil {
		t.Errorf("FROM scratch has base layers %v", sp.base)
	}
}

type tarEntry struct {
	hdr  tar.Header
	body string
}

func writeTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
		h.Size = int64(len(e.body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readTar(t *testing.T, data []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{hdr: *h, body: string(b)})
	}
}

// sampleTar is a layer whose new files carry the time mtime; old.txt predates the epoch.
func sampleTar(t *testing.T, mtime time.Time) []byte {
	old := time.Unix(1000000000, 0)
	return writeTar(t, []tarEntry{
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "app/", Mode: 0o755, ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "app/a.txt", Mode: 0o644, Uid: 1000, Gid: 1000, ModTime: mtime,
			PAXRecords: map[string]string{"SCHILY.xattr.user.note": "kept"}}, body: "hello\n"},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "app/old.txt", Mode: 0o600, ModTime: old}, body: "old\n"},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "app/hard", Linkname: "app/a.txt", ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "app/link", Linkname: "a.txt", Mode: 0o777, ModTime: mtime}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "app/.wh.gone", ModTime: mtime}},
	})
}

// clampTar sets times later than the epoch to the epoch and changes nothing else, so two layers
// that differ only in such times come out byte-identical.
func TestClampTar(t *testing.T) {
	a, b := sampleTar(t, time.Unix(1800000000, 0)), sampleTar(t, time.Unix(1800003600, 7))
	if bytes.Equal(a, b) {
		t.Fatal("fixtures do not differ")
	}
	var ca, cb bytes.Buffer
	if err := clampTar(bytes.NewReader(a), &ca, testEpoch); err != nil {
		t.Fatal(err)
	}
	if err := clampTar(bytes.NewReader(b), &cb, testEpoch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.Bytes(), cb.Bytes()) {
		t.Error("layers differing only in times after the epoch differ after the clamp")
	}
	in, out := readTar(t, a), readTar(t, ca.Bytes())
	if len(in) != len(out) {
		t.Fatalf("%d entries in, %d out", len(in), len(out))
	}
	for i := range in {
		want := in[i]
		if want.hdr.ModTime.After(testEpoch) {
			want.hdr.ModTime = testEpoch
		}
		got := out[i]
		if !got.hdr.ModTime.Equal(want.hdr.ModTime) {
			t.Errorf("%s: mtime %v, want %v", got.hdr.Name, got.hdr.ModTime, want.hdr.ModTime)
		}
		if got.hdr.Name != want.hdr.Name || got.hdr.Typeflag != want.hdr.Typeflag || got.hdr.Mode != want.hdr.Mode ||
			got.hdr.Uid != want.hdr.Uid || got.hdr.Gid != want.hdr.Gid || got.hdr.Linkname != want.hdr.Linkname ||
			got.body != want.body || got.hdr.PAXRecords["SCHILY.xattr.user.note"] != want.hdr.PAXRecords["SCHILY.xattr.user.note"] {
			t.Errorf("entry %d changed beyond its time:\n got %+v\nwant %+v", i, got, want)
		}
	}
	if out[2].hdr.ModTime.Unix() != 1000000000 {
		t.Errorf("a time before the epoch moved: %v", out[2].hdr.ModTime)
	}
	// A layer with nothing after the epoch comes out unchanged.
	early := sampleTar(t, time.Unix(1600000000, 0))
	var ce bytes.Buffer
	if err := clampTar(bytes.NewReader(early), &ce, testEpoch); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ce.Bytes(), early) {
		t.Error("a layer with no time after the epoch was re-encoded differently")
	}
}

func openTestStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// putTestLayer stores tarBytes as a gzip layer and returns its record.
func putTestLayer(t *testing.T, st *store.Store, tarBytes []byte) store.Layer {
	t.Helper()
	var gz bytes.Buffer
	zw := pgzip.NewWriter(&gz)
	if _, err := zw.Write(tarBytes); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	blob, err := st.WriteBlob(gz.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(tarBytes)
	l := store.Layer{DiffID: digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum[:])), Digest: blob,
		MediaType: ocispec.MediaTypeImageLayerGzip, Size: int64(gz.Len()), ContentID: digest.FromString("content " + blob.String())}
	if err := st.PutLayer(l); err != nil {
		t.Fatal(err)
	}
	return l
}

// A rewritten layer keeps its ContentID (cache identity), gets its own diffID and blob, and is
// remembered: the second rewrite of the same layer at the same epoch is the first one's.
func TestRewriteLayer(t *testing.T) {
	st := openTestStore(t)
	l := putTestLayer(t, st, sampleTar(t, time.Unix(1800000000, 0)))
	ctx := context.Background()
	nl, err := rewriteLayer(ctx, st, nil, l, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	if nl.DiffID == l.DiffID || nl.Digest == l.Digest || nl.ContentID != l.ContentID || nl.MediaType != l.MediaType {
		t.Fatalf("rewritten layer %+v from %+v", nl, l)
	}
	if got, err := st.GetLayer(nl.DiffID); err != nil || got != nl {
		t.Errorf("store has %+v, %v for the rewritten layer", got, err)
	}
	rec, err := st.GetRecord(rewriteKey(l.DiffID, testEpoch, l.MediaType))
	if err != nil || rec.Layer != nl.DiffID {
		t.Fatalf("rewrite not remembered: %+v, %v", rec, err)
	}
	// The blob decompresses to the clamped tar, whose digest is the new diffID.
	rc, err := st.Open(nl.Digest)
	if err != nil {
		t.Fatal(err)
	}
	r, err := openLayer(rc, nl.MediaType)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(data) != nl.DiffID {
		t.Errorf("blob holds a tar of digest %s, record says %s", digest.FromBytes(data), nl.DiffID)
	}
	for _, e := range readTar(t, data) {
		if e.hdr.ModTime.After(testEpoch) {
			t.Errorf("%s: mtime %v after the epoch", e.hdr.Name, e.hdr.ModTime)
		}
	}
	// Remembered: the same answer, even with the original blob gone.
	if err := os.Remove(st.BlobPath(l.Digest)); err != nil {
		t.Fatal(err)
	}
	again, err := rewriteLayer(ctx, st, nil, l, testEpoch)
	if err != nil || again != nl {
		t.Errorf("second rewrite: %+v, %v; want %+v", again, err, nl)
	}
	// Another epoch is another copy (the original is needed again).
	if _, err := rewriteLayer(ctx, st, nil, l, testEpoch.Add(time.Hour)); err == nil {
		t.Error("rewrite at another epoch reused the first epoch's copy")
	}

	// A layer with nothing after the epoch stays itself.
	early := putTestLayer(t, st, sampleTar(t, time.Unix(1600000000, 0)))
	same, err := rewriteLayer(ctx, st, nil, early, testEpoch)
	if err != nil || same != early {
		t.Errorf("layer with nothing to clamp: %+v, %v; want itself", same, err)
	}
}

// stamping.rewrite leaves the base image's layers alone, rewrites the rest and names the new
// layers in both the manifest and the config, keeping every other config field.
func TestStampingRewriteImage(t *testing.T) {
	st := openTestStore(t)
	late := time.Unix(1800000000, 0)
	baseL := putTestLayer(t, st, sampleTar(t, late.Add(time.Minute)))
	newL := putTestLayer(t, st, sampleTar(t, late))
	layers := []store.Layer{baseL, newL}
	cfg := map[string]any{
		"created":      testEpoch.Format(time.RFC3339),
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"A=1"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []digest.Digest{baseL.DiffID, newL.DiffID}},
		"history":      []map[string]any{{"created_by": "base"}, {"created_by": "COPY . ."}},
	}
	cb, _ := json.Marshal(cfg)
	cd, err := st.WriteBlob(cb)
	if err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cb))}}
	for _, l := range layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	mb, _ := json.Marshal(m)
	img, err := image.Parse(mb, cb)
	if err != nil {
		t.Fatal(err)
	}
	sp := stamping{epoch: &testEpoch, base: []digest.Digest{baseL.DiffID}}
	out, outLayers, err := sp.rewrite(context.Background(), st, nil, img, layers)
	if err != nil {
		t.Fatal(err)
	}
	if outLayers[0] != baseL || outLayers[1].DiffID == newL.DiffID || outLayers[1].ContentID != newL.ContentID {
		t.Fatalf("layers %+v", outLayers)
	}
	parsed, err := image.FromManifest(out.ManifestBytes, st)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Manifest.Digest != out.Manifest.Digest || parsed.Layers[0].Digest != baseL.Digest || parsed.Layers[1].Digest != outLayers[1].Digest || parsed.Layers[1].Size != outLayers[1].Size {
		t.Errorf("manifest layers %+v", parsed.Layers)
	}
	if parsed.Layers[0].Annotations != nil || parsed.Layers[1].Annotations["buildkit/rewritten-timestamp"] != "1700000000" {
		t.Errorf("layer annotations: base %v, new %v", parsed.Layers[0].Annotations, parsed.Layers[1].Annotations)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(parsed.ConfigBytes, &got); err != nil {
		t.Fatal(err)
	}
	var rootfs ocispec.RootFS
	json.Unmarshal(got["rootfs"], &rootfs)
	if !reflect.DeepEqual(rootfs.DiffIDs, []digest.Digest{baseL.DiffID, outLayers[1].DiffID}) {
		t.Errorf("config diffIDs %v", rootfs.DiffIDs)
	}
	for _, k := range []string{"created", "architecture", "os", "config", "history"} {
		var a, b any
		json.Unmarshal(got[k], &a)
		json.Unmarshal(mustMarshal(t, cfg[k]), &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("config %s: %s, want %s", k, got[k], mustMarshal(t, cfg[k]))
		}
	}
	// Without a base, every layer is the build's.
	sp.base = nil
	_, all, err := sp.rewrite(context.Background(), st, nil, img, layers)
	if err != nil {
		t.Fatal(err)
	}
	if all[0] == baseL {
		t.Error("a layer not from the base was left alone")
	}

	// A layer with nothing after the epoch keeps its blob but is still marked, as in BuildKit.
	early := putTestLayer(t, st, sampleTar(t, time.Unix(1600000000, 0)))
	sp.base = []digest.Digest{baseL.DiffID}
	img2 := testImage(t, st, []store.Layer{baseL, early})
	out2, _, err := sp.rewrite(context.Background(), st, nil, img2, []store.Layer{baseL, early})
	if err != nil {
		t.Fatal(err)
	}
	if out2.Layers[1].Digest != early.Digest || out2.Layers[1].Annotations["buildkit/rewritten-timestamp"] != "1700000000" {
		t.Errorf("unchanged layer: %+v", out2.Layers[1])
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testImage stores a minimal image of layers and returns it.
func testImage(t *testing.T, st *store.Store, layers []store.Layer) *image.Image {
	t.Helper()
	cfg := ocispec.Image{Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"}, RootFS: ocispec.RootFS{Type: "layers"}}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	cb := mustMarshal(t, cfg)
	cd, err := st.WriteBlob(cb)
	if err != nil {
		t.Fatal(err)
	}
	m.Config = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cb))}
	img, err := image.Parse(mustMarshal(t, m), cb)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
