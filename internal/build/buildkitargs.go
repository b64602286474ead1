package build

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/strata-build/strata/internal/remotecache"
)

// buildkitArgs applies the BUILDKIT_* build args that buildx and BuildKit read outside the
// Dockerfile's own ARG scoping. Those that change a RUN (BUILDKIT_SANDBOX_HOSTNAME,
// BUILDKIT_CACHE_MOUNT_NS) and BUILDKIT_SYNTAX are the frontend's (internal/dockerfile).
func buildkitArgs(o *Options) error {
	// buildx turns a true BUILDKIT_INLINE_CACHE into --cache-to type=inline.
	if v, ok := o.BuildArgs["BUILDKIT_INLINE_CACHE"]; ok {
		if on, _ := strconv.ParseBool(v); on && !slices.ContainsFunc(o.CacheTo, func(sp remotecache.Spec) bool { return sp.Type == "inline" }) {
			sp, err := remotecache.ParseSpec("type=inline", true)
			if err != nil {
				return err
			}
			o.CacheTo = append(slices.Clone(o.CacheTo), sp)
		}
	}
	if v, ok := o.BuildArgs["BUILDKIT_MULTI_PLATFORM"]; ok {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("--build-arg BUILDKIT_MULTI_PLATFORM=%s: use true or false", v)
		}
		if on {
			o.Warn("BUILDKIT_MULTI_PLATFORM=" + v + ": strata writes a single-platform image as one manifest, without the index BuildKit would wrap it in; the build arg is ignored")
		}
	}
	return nil
}
