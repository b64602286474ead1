package solver

import (
	"encoding/json"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/graph"
	"github.com/strata-build/strata/internal/image"
)

// assemble writes the target's config and manifest. Everything in them derives from cache records
// and the graph, never the clock, so a fully cached build yields the same digest.
func (s *solver) assemble(b *graph.Build, st *graph.Stage, ss *stageState) (*image.Image, error) {
	cfg := dockerspec.DockerOCIImage{Config: st.Config}
	cfg.Created = timePtr(ss.created)
	cfg.Architecture = b.Platform.Architecture
	cfg.OS = b.Platform.OS
	cfg.Variant = b.Platform.Variant
	cfg.RootFS = ocispec.RootFS{Type: "layers"}
	for _, l := range ss.fs.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
	}
	cfg.History = ss.history
	configBytes, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cd, err := s.opts.Store.WriteBlob(configBytes)
	if err != nil {
		return nil, err
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(configBytes))},
		Layers:    []ocispec.Descriptor{},
	}
	for _, l := range ss.fs.layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: layerMediaType(l.MediaType), Digest: l.Digest, Size: l.Size})
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	md, err := s.opts.Store.WriteBlob(mb)
	if err != nil {
		return nil, err
	}
	return &image.Image{
		Manifest:      ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))},
		ManifestBytes: mb,
		Config:        m.Config,
		ConfigBytes:   configBytes,
		Layers:        m.Layers,
	}, nil
}

// layerMediaType maps Docker layer types of pulled bases to OCI ones, so the manifest is uniform.
func layerMediaType(mt string) string {
	switch mt {
	case "application/vnd.docker.image.rootfs.diff.tar.gzip":
		return ocispec.MediaTypeImageLayerGzip
	case "":
		return ocispec.MediaTypeImageLayerGzip
	}
	return mt
}

var _ digest.Digest
