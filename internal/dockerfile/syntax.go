package dockerfile

import (
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// checkSyntax accepts a `# syntax=` directive (or the BUILDKIT_SYNTAX build arg, which BuildKit
// lets override it) only when it names the Dockerfile frontend: strata is that frontend, built
// from BuildKit v0.33.1's parser, and cannot run another one. The labs and upstream channels are
// accepted too: in v0.33.1 they are built without extra feature tags, so they parse the same
// language.
func checkSyntax(file string, df []byte, buildArgs map[string]string) error {
	if v, ok := buildArgs["BUILDKIT_SYNTAX"]; ok && strings.TrimSpace(v) != "" {
		ref, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		if !IsDockerfileFrontend(ref) {
			return &Error{File: file, Msg: "--build-arg BUILDKIT_SYNTAX=" + v + ": strata runs only the Dockerfile frontend (docker/dockerfile); drop the build arg or name docker/dockerfile:1"}
		}
		return nil
	}
	ref, _, loc, ok := parser.DetectSyntax(df)
	if !ok {
		return nil
	}
	if IsDockerfileFrontend(ref) {
		return nil
	}
	line := 1
	if len(loc) > 0 {
		line = loc[0].Start.Line
	}
	return &Error{File: file, Line: line, Msg: "syntax=" + ref + ": strata runs only the Dockerfile frontend (docker/dockerfile); remove the directive or use # syntax=docker/dockerfile:1"}
}

// IsDockerfileFrontend reports whether an image reference names docker/dockerfile or
// docker/dockerfile-upstream, with any tag (1, 1.7, 1-labs, latest…) or digest.
func IsDockerfileFrontend(ref string) bool {
	ref = strings.TrimSpace(ref)
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	for _, p := range []string{"docker.io/", "index.docker.io/", "registry-1.docker.io/"} {
		ref = strings.TrimPrefix(ref, p)
	}
	return ref == "docker/dockerfile" || ref == "docker/dockerfile-upstream"
}
