// Package platform parses, normalizes and compares OCI platforms ("linux/arm64", "linux/arm/v7")
// the way BuildKit's --platform and FROM --platform read them.
package platform

import (
	"fmt"
	"runtime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Parse reads one platform ("linux/arm64", "linux/arm/v7", "arm64", or "local" for the host's,
// as buildx reads it) and normalizes it.
func Parse(s string) (ocispec.Platform, error) {
	if strings.EqualFold(strings.TrimSpace(s), "local") {
		return Host(), nil
	}
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), "/")
	var p ocispec.Platform
	switch len(parts) {
	case 1:
		p.OS, p.Architecture = "linux", parts[0]
	case 2:
		p.OS, p.Architecture = parts[0], parts[1]
	case 3:
		p.OS, p.Architecture, p.Variant = parts[0], parts[1], parts[2]
	default:
		return p, fmt.Errorf("invalid platform %q: use OS/ARCH[/VARIANT], e.g. linux/arm64", s)
	}
	if p.OS == "" || p.Architecture == "" {
		return p, fmt.Errorf("invalid platform %q: use OS/ARCH[/VARIANT], e.g. linux/arm64", s)
	}
	return Normalize(p), nil
}

// ParseList reads a comma-separated --platform value; duplicates (after normalizing) are dropped.
func ParseList(s string) ([]ocispec.Platform, error) {
	var out []ocispec.Platform
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		p, err := Parse(f)
		if err != nil {
			return nil, err
		}
		if k := Format(p); !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// Normalize applies containerd's aliases and default variants, so equal platforms compare equal:
// aarch64 is arm64 (whose v8 is implied), arm alone is arm/v7, x86_64 is amd64 (v1 implied).
func Normalize(p ocispec.Platform) ocispec.Platform {
	p.OS = strings.ToLower(p.OS)
	switch strings.ToLower(p.Architecture) {
	case "x86_64", "x86-64", "amd64":
		p.Architecture = "amd64"
		if p.Variant == "v1" {
			p.Variant = ""
		}
	case "aarch64", "arm64":
		p.Architecture = "arm64"
		if p.Variant == "8" || p.Variant == "v8" {
			p.Variant = ""
		}
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	case "arm":
		switch p.Variant {
		case "", "7":
			p.Variant = "v7"
		case "5", "6", "8":
			p.Variant = "v" + p.Variant
		}
	case "i386", "i486", "i586", "i686", "x86", "386":
		p.Architecture = "386"
	default:
		p.Architecture = strings.ToLower(p.Architecture)
	}
	return p
}

// Format is the OS/ARCH[/VARIANT] form.
func Format(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Host is the platform strata itself runs as: what RUN executes natively.
func Host() ocispec.Platform {
	return Normalize(ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH})
}

// Equal compares normalized OS, architecture and variant.
func Equal(a, b ocispec.Platform) bool {
	a, b = Normalize(a), Normalize(b)
	return a.OS == b.OS && a.Architecture == b.Architecture && a.Variant == b.Variant
}

// Native reports whether the host runs p's binaries without emulation: the same architecture
// (amd64 variants v2, v3… included, as the CPU decides those), or 32-bit x86 on amd64.
func Native(p ocispec.Platform) bool {
	p, h := Normalize(p), Host()
	if p.OS != h.OS {
		return false
	}
	if p.Architecture == h.Architecture {
		return p.Architecture == "amd64" || p.Variant == h.Variant
	}
	return h.Architecture == "amd64" && p.Architecture == "386"
}
