// Package remotecache moves strata's cache between machines: it writes the records a build used,
// and the layer blobs they name, as an ordinary OCI artifact in a registry or an OCI layout
// directory (or inline in an image config), and reads them back as a lookup table the solver
// consults on a local miss. Import reads only the manifest and config; layer bytes stay where
// they are until something needs them. The contents of cache mounts travel the same way.
package remotecache

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/store"
)

// Media types of the cache artifact (docs/CACHE-FORMAT.md).
const (
	ArtifactType   = "application/vnd.strata.cache.v1"
	MountMediaType = "application/vnd.strata.cache.mount.v1.tar+gzip"
	// InlineKey is the image config field that carries an inline cache.
	InlineKey = "strata.cache.v1"
	// Version is the config's format version; a reader ignores a cache of another version.
	Version = 1
)

// Config is the cache artifact's config blob: the records, the cache mounts' contents, and the
// selection memos that let a reader key COPY --from steps without fetching the stage.
type Config struct {
	Version    int         `json:"version"`
	Records    []Record    `json:"records"`
	Mounts     []Mount     `json:"mounts,omitempty"`
	Selections []Selection `json:"selections,omitempty"`
}

// Record is one step result: the key it answers, the layer it produced (nil when the step changed
// no file) and what it cost.
type Record struct {
	Key     string        `json:"key"`
	Step    string        `json:"step"`
	Parent  digest.Digest `json:"parent,omitempty"` // filesystem identity the step ran on (informational; the key covers it)
	Layer   *Layer        `json:"layer,omitempty"`
	Created time.Time     `json:"created"`
	Elapsed time.Duration `json:"elapsed"`
	// Position names the step portably (Dockerfile relative to the context, target, stage,
	// position) and Inputs summarises what it read, so a runner that misses can say what changed.
	Position string            `json:"position,omitempty"`
	Inputs   map[string]string `json:"inputs,omitempty"`
}

// Layer describes a layer blob: its compressed descriptor, diffID and timestamp-free content ID
// (which the next step's key builds on).
type Layer struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	DiffID    digest.Digest `json:"diffID"`
	ContentID digest.Digest `json:"contentID"`
}

// Mount is the content of one cache mount (RUN --mount=type=cache,id=ID) as a chain of tar blobs:
// the first is a full copy, each next one the changes on top of it (overlay-style whiteouts for
// deletions), so an export uploads only what changed since the version it imported.
type Mount struct {
	ID    string               `json:"id"`
	Blobs []ocispec.Descriptor `json:"blobs"`
	Size  int64                `json:"size"` // bytes of file content when exported
}

func (l *Layer) storeLayer(remote string) store.Layer {
	return store.Layer{DiffID: l.DiffID, Digest: l.Digest, MediaType: l.MediaType, Size: l.Size, ContentID: l.ContentID, Remote: remote}
}

func (l *Layer) validate() error {
	for _, d := range []digest.Digest{l.Digest, l.DiffID, l.ContentID} {
		if err := d.Validate(); err != nil {
			return err
		}
	}
	if l.Size < 0 {
		return fmt.Errorf("negative size")
	}
	return nil
}

// parseConfig reads a config and drops records a reader cannot use, so a damaged or foreign
// entry costs a miss, never a wrong answer.
func parseConfig(data []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("cache config: %w", err)
	}
	if c.Version != Version {
		return nil, fmt.Errorf("cache format version %d (this strata reads %d)", c.Version, Version)
	}
	ok := c.Records[:0]
	for _, r := range c.Records {
		if len(r.Key) != 64 {
			continue
		}
		if r.Layer != nil && r.Layer.validate() != nil {
			continue
		}
		ok = append(ok, r)
	}
	c.Records = ok
	mounts := c.Mounts[:0]
	for _, m := range c.Mounts {
		valid := m.ID != "" && len(m.Blobs) > 0
		for _, b := range m.Blobs {
			if b.Digest.Validate() != nil || b.Size < 0 {
				valid = false
			}
		}
		if valid {
			mounts = append(mounts, m)
		}
	}
	c.Mounts = mounts
	c.Selections = validSelections(c.Selections)
	return &c, nil
}
