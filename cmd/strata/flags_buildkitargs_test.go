package main

import (
	"strings"
	"testing"
)

// TestFlagBuildkitArgs: BUILDKIT_INLINE_CACHE=1 is --cache-to type=inline (buildx), and
// BUILDKIT_CACHE_MOUNT_NS gives cache mounts a namespace: a build in another namespace starts
// with an empty cache and does not reuse the RUN step's record.
func TestFlagBuildkitArgs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("bkargs", map[string]string{"Dockerfile": `FROM {{BASE}}
RUN --mount=type=cache,target=/cache { ls /cache; echo x > /cache/$(date +%s%N); } > /seen
`})
	o, _ := e.buildOCI("inline", "--build-arg", "BUILDKIT_INLINE_CACHE=1", ctx)
	if !strings.Contains(string(o.configRaw), `"strata.cache.v1"`) {
		t.Errorf("BUILDKIT_INLINE_CACHE=1 left the config without an inline cache:\n%s", o.configRaw)
	}
	o, _ = e.buildOCI("no-inline", "--build-arg", "BUILDKIT_INLINE_CACHE=0", "--no-cache", ctx)
	if strings.Contains(string(o.configRaw), `"strata.cache.v1"`) {
		t.Errorf("BUILDKIT_INLINE_CACHE=0 exported an inline cache")
	}

	// The first build without a namespace filled the default cache (twice over, with --no-cache).
	o, r := e.buildOCI("ns-a", "--build-arg", "BUILDKIT_CACHE_MOUNT_NS=team-a", ctx)
	if m := missed(r.out); len(m) == 0 {
		t.Errorf("another cache namespace reused the RUN record\n%s", r.out)
	}
	if got := fileAt(t, o.unpack(t), "seen"); got != "" {
		t.Errorf("namespace team-a saw the default cache's files: %q", got)
	}
	o, _ = e.buildOCI("ns-a-again", "--no-cache", "--build-arg", "BUILDKIT_CACHE_MOUNT_NS=team-a", ctx)
	if got := fileAt(t, o.unpack(t), "seen"); strings.Count(got, "\n") != 1 {
		t.Errorf("namespace team-a's second build saw %q, want its one earlier file", got)
	}
}
