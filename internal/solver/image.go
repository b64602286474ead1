package solver

import (
	"encoding/json"
	"time"

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
	cfg.Author = st.Author // MAINTAINER's, else the base image's, as BuildKit writes it
	cfg.Architecture = b.Platform.Architecture
	cfg.OS = b.Platform.OS
	cfg.Variant = b.Platform.Variant
	cfg.RootFS = ocispec.RootFS{Type: "layers"}
	for _, l := range ss.fs.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
	}
	cfg.History = ss.history
	if e := s.opts.SourceDateEpoch; e != nil {
		var added bool
		cfg.History, added = pinHistory(ss.history, baseHistory(st), *e)
		if added {
			cfg.Created = timePtr(*e)
		}
	}
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

// pinHistory returns history with every entry this build added dated epoch, as BuildKit's
// Dockerfile frontend dates them when SOURCE_DATE_EPOCH is set (whether or not the layers are
// rewritten). The base image's own entries keep their times: like BuildKit, the leading entries
// equal to the base's are the base's, and everything from the first difference on is the build's.
// added reports whether the build added any entry, in which case the image's created time is the
// epoch too.
func pinHistory(history, base []ocispec.History, epoch time.Time) (out []ocispec.History, added bool) {
	out = make([]ocispec.History, len(history))
	copy(out, history)
	for i := range out {
		if !added && i < len(base) && sameHistory(out[i], base[i]) {
			continue
		}
		added = true
		out[i].Created = timePtr(epoch)
	}
	return out, added
}

func sameHistory(a, b ocispec.History) bool {
	if a.Author != b.Author || a.CreatedBy != b.CreatedBy || a.Comment != b.Comment || a.EmptyLayer != b.EmptyLayer {
		return false
	}
	if a.Created == nil || b.Created == nil {
		return a.Created == nil && b.Created == nil
	}
	return a.Created.Equal(*b.Created)
}

// baseHistory is the history of the image at the bottom of st's FROM chain (nil for scratch or a
// local context), the part of the image's history SOURCE_DATE_EPOCH leaves alone.
func baseHistory(st *graph.Stage) []ocispec.History {
	for st.Base.Stage != nil {
		st = st.Base.Stage
	}
	if st.Base.Image == "" || st.Base.Context != "" {
		return nil
	}
	return st.Base.Config.History
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
