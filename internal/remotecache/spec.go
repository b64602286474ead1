package remotecache

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/strata-build/strata/internal/store"
)

// Spec is one --cache-from or --cache-to, in buildx's CSV syntax.
type Spec struct {
	Type        string // registry, local or inline
	Ref         string // registry: the cache's reference
	Dir         string // local: src= or dest=
	Mode        string // min (the exported image's steps) or max (every step built)
	Compression string // the layers' compression, when given
	IgnoreError bool   // an export failure is a warning
	// Mounts exports the contents of the build's cache mounts; MountsMaxSize caps them.
	Mounts        bool
	MountsMaxSize int64
}

// DefaultMountsMaxSize caps exported cache-mount contents when mounts-max-size= is not given.
const DefaultMountsMaxSize = 2 << 30

// ParseSpec reads one --cache-from (export false) or --cache-to (export true) value. A value
// without "=" is a registry reference, as in buildx. Unknown attributes are errors.
func ParseSpec(s string, export bool) (Spec, error) {
	flag := "--cache-from"
	if export {
		flag = "--cache-to"
	}
	sp := Spec{Mode: "min", MountsMaxSize: DefaultMountsMaxSize}
	if !strings.Contains(s, "=") {
		if s == "" {
			return sp, fmt.Errorf("%s: empty value", flag)
		}
		sp.Type, sp.Ref = "registry", s
		return sp, nil
	}
	attrs, err := Attrs(flag, s)
	if err != nil {
		return sp, err
	}
	sp.Type = attrs["type"]
	if sp.Type == "" {
		sp.Type = "registry" // buildx's default when ref= is given without type=
	}
	allowed := map[string][]string{
		"registry": {"type", "ref", "mode", "compression", "compression-level", "force-compression", "oci-mediatypes", "image-manifest", "ignore-error", "mounts", "mounts-max-size"},
		"local":    {"type", "src", "dest", "mode", "compression", "compression-level", "force-compression", "oci-mediatypes", "image-manifest", "ignore-error", "mounts", "mounts-max-size"},
		"inline":   {"type", "mode"},
	}
	keys, ok := allowed[sp.Type]
	if !ok {
		return sp, fmt.Errorf("%s %q: unknown cache type %q (use registry, local or inline)", flag, s, sp.Type)
	}
	for _, k := range sortedKeys(attrs) {
		if !slices.Contains(keys, k) {
			return sp, fmt.Errorf("%s %q: unknown attribute %q for type=%s (known: %s)", flag, s, k, sp.Type, strings.Join(keys[1:], ", "))
		}
	}
	boolAttr := func(k string) (bool, error) {
		switch attrs[k] {
		case "", "false":
			return false, nil
		case "true":
			return true, nil
		}
		return false, fmt.Errorf("%s %q: %s=%s: use true or false", flag, s, k, attrs[k])
	}

	if sp.IgnoreError, err = boolAttr("ignore-error"); err != nil {
		return sp, err
	}
	if sp.Mounts, err = boolAttr("mounts"); err != nil {
		return sp, err
	}
	for _, k := range []string{"oci-mediatypes", "image-manifest", "force-compression"} {
		if _, err := boolAttr(k); err != nil {
			return sp, err
		}
	}
	if attrs["oci-mediatypes"] == "false" || attrs["image-manifest"] == "false" {
		return sp, fmt.Errorf("%s %q: strata always writes the cache as an OCI image manifest; drop oci-mediatypes=false / image-manifest=false", flag, s)
	}
	if v := attrs["mounts-max-size"]; v != "" {
		if sp.MountsMaxSize, err = store.ParseSize(v); err != nil {
			return sp, fmt.Errorf("%s %q: mounts-max-size=%s: %w", flag, s, v, err)
		}
	}
	switch m := attrs["mode"]; m {
	case "", "min":
	case "max":
		sp.Mode = "max"
	default:
		return sp, fmt.Errorf("%s %q: mode=%s: use min or max", flag, s, m)
	}
	switch c := attrs["compression"]; c {
	case "", "gzip", "zstd":
		sp.Compression = c
	case "uncompressed", "estargz":
		return sp, fmt.Errorf("%s %q: compression=%s is not supported (use gzip or zstd)", flag, s, c)
	default:
		return sp, fmt.Errorf("%s %q: compression=%s: use gzip or zstd", flag, s, c)
	}
	switch sp.Type {
	case "registry":
		sp.Ref = attrs["ref"]
		if sp.Ref == "" {
			return sp, fmt.Errorf("%s %q: type=registry needs ref=REGISTRY/NAME:TAG", flag, s)
		}
	case "local":
		want := "src"
		if export {
			want = "dest"
		}
		dir := attrs[want]
		if dir == "" {
			return sp, fmt.Errorf("%s %q: type=local needs %s=DIR", flag, s, want)
		}
		if other := map[string]string{"src": "dest", "dest": "src"}[want]; attrs[other] != "" {
			return sp, fmt.Errorf("%s %q: type=local takes %s=, not %s=", flag, s, want, other)
		}
		if sp.Dir, err = filepath.Abs(dir); err != nil {
			return sp, err
		}
	case "inline":
		if !export {
			return sp, fmt.Errorf("%s %q: an inline cache is read from its image: use --cache-from type=registry,ref=IMAGE", flag, s)
		}
		if sp.Mode == "max" {
			return sp, fmt.Errorf("%s %q: an inline cache holds only the image's own steps (mode=min); use type=registry for mode=max", flag, s)
		}
	}
	return sp, nil
}

// String names the cache for messages.
func (s Spec) String() string {
	switch s.Type {
	case "registry":
		return s.Ref
	case "local":
		return s.Dir
	}
	return s.Type
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
