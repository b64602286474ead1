package build

import (
	"fmt"
	"regexp"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Annotation is one OCI annotation and where BuildKit's image exporters put it: the manifest
// (the default), the descriptor pointing at the manifest (an OCI layout's index.json), the
// index, or the index's descriptor. Platform, when set, limits it to that platform's manifest.
type Annotation struct {
	Type     string // manifest, manifest-descriptor, index, index-descriptor
	Platform *ocispec.Platform
	Key      string
	Value    string
}

// The exporter attribute (BuildKit's exptypes) and the --annotation flag (buildx's) syntaxes.
var (
	attrAnnotation = regexp.MustCompile(`^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/-]+)\])?\.(\S+)$`)
	flagAnnotation = regexp.MustCompile(`^(?:([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?:)?(\S+)$`)
)

// ParseAnnotations reads --annotation values: [TYPE[PLATFORM]:]KEY=VALUE.
func ParseAnnotations(list []string) ([]Annotation, error) {
	var out []Annotation
	for _, s := range list {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("--annotation %q: use KEY=VALUE or TYPE:KEY=VALUE", s)
		}
		g := flagAnnotation.FindStringSubmatch(k)
		if g == nil {
			return nil, fmt.Errorf("--annotation %q: use [TYPE[PLATFORM]:]KEY=VALUE", s)
		}
		a, err := newAnnotation(g[1], g[2], g[3], v)
		if err != nil {
			return nil, fmt.Errorf("--annotation %q: %w", s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// parseAnnotationAttr reads an --output attribute annotation[-TYPE][[PLATFORM]].KEY; ok is false
// when the attribute is not an annotation.
func parseAnnotationAttr(k, v string) (Annotation, bool, error) {
	g := attrAnnotation.FindStringSubmatch(k)
	if g == nil {
		return Annotation{}, false, nil
	}
	a, err := newAnnotation(g[1], g[2], g[3], v)
	return a, true, err
}

func newAnnotation(typ, platform, key, value string) (Annotation, error) {
	switch typ {
	case "":
		typ = "manifest"
	case "manifest", "manifest-descriptor", "index", "index-descriptor":
	default:
		return Annotation{}, fmt.Errorf("unknown annotation type %q (manifest, manifest-descriptor, index, index-descriptor)", typ)
	}
	a := Annotation{Type: typ, Key: key, Value: value}
	if platform != "" {
		parts := strings.Split(platform, "/")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return Annotation{}, fmt.Errorf("platform %q: use OS/ARCH[/VARIANT]", platform)
		}
		p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) == 3 {
			p.Variant = parts[2]
		}
		a.Platform = &p
	}
	return a, nil
}

// annotationsFor splits an output's annotations for an image of platform p, later ones winning:
// manifest and manifest-descriptor annotations for another platform are left out, as BuildKit
// leaves them out of that platform's manifest. strata's images are single-platform manifests
// without an index, so index annotations are an error, as in BuildKit's exporter.
func annotationsFor(anns []Annotation, p ocispec.Platform, output string) (manifest, descriptor map[string]string, err error) {
	for _, a := range anns {
		if a.Platform != nil && (a.Platform.OS != p.OS || a.Platform.Architecture != p.Architecture || (a.Platform.Variant != "" && a.Platform.Variant != p.Variant)) {
			continue
		}
		switch a.Type {
		case "manifest":
			if manifest == nil {
				manifest = map[string]string{}
			}
			manifest[a.Key] = a.Value
		case "manifest-descriptor":
			if descriptor == nil {
				descriptor = map[string]string{}
			}
			descriptor[a.Key] = a.Value
		default:
			return nil, nil, fmt.Errorf("%s: %s annotation %s: index annotations not supported for single platform export (the image is one manifest, with no index): use the manifest or manifest-descriptor type", output, a.Type, a.Key)
		}
	}
	return manifest, descriptor, nil
}
