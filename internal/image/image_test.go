package image

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func manifestFor(t *testing.T, cfg []byte, layers ...ocispec.Descriptor) []byte {
	t.Helper()
	b, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers:    layers,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParse(t *testing.T) {
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("l"), Size: 1}
	m := manifestFor(t, cfg, layer, layer)
	img, err := Parse(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A manifest without mediaType is an OCI manifest; its digest is of the exact bytes.
	if img.Manifest.MediaType != ocispec.MediaTypeImageManifest || img.Manifest.Digest != digest.FromBytes(m) {
		t.Fatalf("manifest descriptor %+v", img.Manifest)
	}
	if len(img.Layers) != 2 || len(img.Blobs()) != 2 {
		t.Fatalf("layers %d (want 2, duplicates kept), blobs %d (want config + 1)", len(img.Layers), len(img.Blobs()))
	}
	if p, err := img.Platform(); err != nil || p.Architecture != "amd64" {
		t.Fatalf("platform %+v, %v", p, err)
	}
	if _, err := Parse(m, []byte(`{"architecture":"arm64","os":"linux"}`)); err == nil {
		t.Fatal("a config the manifest does not name was accepted")
	}
}

func TestRejects(t *testing.T) {
	for name, in := range map[string]string{
		"schema1": `{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}`,
		"index":   `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`,
		"junk":    `not json`,
	} {
		if _, err := Parse([]byte(in), nil); err == nil {
			t.Fatalf("%s accepted", name)
		} else if name == "schema1" && !strings.Contains(err.Error(), "schema1") {
			t.Fatalf("schema1 error does not say so: %v", err)
		}
	}
}
