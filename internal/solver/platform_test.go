package solver

import (
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/graph"
)

// The same RUN on the same parent gives other bytes under arm64 than under amd64, so the
// platform is part of the key; linux/amd64 keys stay what they were before platforms existed.
func TestKeyNamesPlatform(t *testing.T) {
	parent := digest.FromString("parent")
	keyFor := func(p ocispec.Platform) string {
		st := &graph.Stage{Name: "x", Platform: p}
		step := &graph.Step{Stage: st, Kind: graph.KindRun, Text: "RUN uname -m > /arch",
			Run: &graph.RunOp{Args: []string{"/bin/sh", "-c", "uname -m > /arch"}}}
		in := &inputs{def: map[string]any{"args": step.Run.Args}}
		return in.key(step, parent, "gzip")
	}
	amd := keyFor(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	arm := keyFor(ocispec.Platform{OS: "linux", Architecture: "arm64"})
	armv7 := keyFor(ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"})
	armv6 := keyFor(ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v6"})
	if amd == arm || arm == armv7 || armv7 == armv6 {
		t.Fatalf("platforms share a key: amd64 %s arm64 %s arm/v7 %s arm/v6 %s", amd, arm, armv7, armv6)
	}
	// Spellings of one platform are one key.
	if k := keyFor(ocispec.Platform{OS: "linux", Architecture: "aarch64"}); k != arm {
		t.Errorf("aarch64 key %s, arm64 %s", k, arm)
	}
	if k := keyFor(ocispec.Platform{OS: "linux", Architecture: "arm"}); k != armv7 {
		t.Errorf("arm key %s, arm/v7 %s", k, armv7)
	}
	// A stage without a platform (graphs made before platforms) is linux/amd64.
	if k := keyFor(ocispec.Platform{}); k != amd {
		t.Errorf("no-platform key %s, amd64 %s", k, amd)
	}
}

func TestPlatformLabel(t *testing.T) {
	amd := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm := ocispec.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	for _, c := range []struct {
		p, target ocispec.Platform
		want      string
	}{
		{amd, amd, "linux/amd64"},
		{amd, arm, "linux/amd64->arm/v7"},
		{arm, arm, "linux/arm/v7"},
	} {
		if got := platformLabel(c.p, c.target); got != c.want {
			t.Errorf("platformLabel(%v, %v) = %q, want %q", c.p, c.target, got, c.want)
		}
	}
}
