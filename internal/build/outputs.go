package build

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/strata-build/strata/internal/remotecache"
)

// Output is one -o request (or --push / the default local image).
type Output struct {
	Type string // image, registry, oci, docker, local
	Dest string
	Tar  bool
	// Names overrides -t for this output (name=a,b); Compression is the layers' compression.
	Names       []string
	Compression string
	// RewriteTimestamp (rewrite-timestamp=true) clamps the file times in the layers the build
	// made to SOURCE_DATE_EPOCH, as BuildKit's image exporters do; base image layers stay as
	// they are.
	RewriteTimestamp bool
	// Annotations are this output's annotation.* attributes; --annotation flags come first.
	Annotations []Annotation

	// manifestAnn and descriptorAnn are Annotations resolved for the build's platform (Run).
	manifestAnn, descriptorAnn map[string]string
}

// ParseOutputs reads -o values in buildx's syntax; push adds a registry output. Unknown types and
// attributes are errors naming them.
func ParseOutputs(specs []string, push bool) ([]Output, error) {
	var outs []Output
	for _, s := range specs {
		o := Output{Tar: true}
		if strings.TrimSpace(s) == "" {
			return nil, errors.New(`--output "": give a directory, "-" or type=…`)
		}
		if !strings.Contains(s, "=") {
			// buildx: a bare path means a local directory, "-" a tar on stdout.
			o.Type, o.Dest = "local", s
			outs = append(outs, o)
			continue
		}
		attrs, err := remotecache.Attrs("--output", s)
		if err != nil {
			return nil, err
		}
		o.Type, o.Dest = attrs["type"], attrs["dest"]
		known := map[string][]string{
			"image":    {"type", "name", "push", "oci-mediatypes", "compression", "compression-level", "force-compression", "store", "unpack", "rewrite-timestamp"},
			"registry": {"type", "name", "push", "oci-mediatypes", "compression", "compression-level", "force-compression", "rewrite-timestamp"},
			"oci":      {"type", "dest", "tar", "name", "oci-mediatypes", "compression", "compression-level", "force-compression", "rewrite-timestamp"},
			"docker":   {"type", "dest", "tar", "name", "oci-mediatypes", "compression", "compression-level", "force-compression", "rewrite-timestamp"},
			"local":    {"type", "dest"},
			"tar":      {"type", "dest"},
		}
		keys, ok := known[o.Type]
		switch {
		case o.Type == "":
			return nil, fmt.Errorf("--output %q: missing type= (image, registry, oci, docker, local)", s)
		case !ok:
			return nil, fmt.Errorf("--output %q: unknown type %q (image, registry, oci, docker, local)", s, o.Type)
		}
		for _, k := range slices.Sorted(maps.Keys(attrs)) {
			if slices.Contains(keys, k) {
				continue
			}
			a, isAnnotation, err := parseAnnotationAttr(k, attrs[k])
			switch {
			case !isAnnotation:
				return nil, fmt.Errorf("--output %q: unknown attribute %q for type=%s (known: %s, annotation.KEY)", s, k, o.Type, strings.Join(keys[1:], ", "))
			case err != nil:
				return nil, fmt.Errorf("--output %q: %s: %w", s, k, err)
			case o.Type == "local" || o.Type == "tar":
				return nil, fmt.Errorf("--output %q: %s: type=%s writes files, not an image, so it has nowhere to put annotations", s, k, o.Type)
			}
			o.Annotations = append(o.Annotations, a)
		}
		for _, k := range []string{"push", "oci-mediatypes", "tar", "force-compression", "store", "unpack", "rewrite-timestamp"} {
			if v, ok := attrs[k]; ok && v != "true" && v != "false" {
				return nil, fmt.Errorf("--output %q: %s=%s: use true or false", s, k, v)
			}
		}
		if attrs["oci-mediatypes"] == "false" {
			return nil, fmt.Errorf("--output %q: strata writes OCI media types only; drop oci-mediatypes=false", s)
		}
		o.Tar = attrs["tar"] != "false"
		o.RewriteTimestamp = attrs["rewrite-timestamp"] == "true"
		switch c := attrs["compression"]; c {
		case "", "gzip", "zstd":
			o.Compression = c
		default:
			return nil, fmt.Errorf("--output %q: compression=%s: use gzip or zstd", s, c)
		}
		if n := attrs["name"]; n != "" {
			o.Names = strings.Split(n, ",")
		}
		switch o.Type {
		case "oci", "docker", "local":
			if o.Dest == "" {
				return nil, fmt.Errorf("--output %q: type=%s needs dest=PATH", s, o.Type)
			}
		case "tar":
			if o.Dest == "" {
				return nil, fmt.Errorf("--output %q: type=tar needs dest=PATH", s)
			}
			return nil, fmt.Errorf("--output %q: type=tar is not supported yet; use type=local or type=oci", s)
		case "registry":
			if attrs["push"] == "false" {
				o.Type = "image"
			}
		case "image":
			if attrs["push"] == "true" {
				o.Type = "registry"
			}
		}
		outs = append(outs, o)
	}
	if push {
		outs = append(outs, Output{Type: "registry"})
	}
	if len(outs) == 0 {
		outs = append(outs, Output{Type: "image"})
	}
	return outs, nil
}
