package dockerfile

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/platform"
)

// realWorldImages serves an empty linux/amd64 image config for every reference: the real-world
// frontend test exercises the frontend's own logic, not registries.
type realWorldImages struct{}

func (realWorldImages) ResolveImageConfig(_ context.Context, _ string, _ ocispec.Platform) (string, dockerspec.DockerOCIImage, error) {
	var img dockerspec.DockerOCIImage
	img.OS, img.Architecture = "linux", "amd64"
	return "sha256:" + strings.Repeat("b", 64), img, nil
}

// realWorldFiles lists the real-world corpora: internal/check's (STR001-labelled) and this
// package's (frontend-heavy: multi-stage cross builds, escape and syntax directives, Windows).
func realWorldFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"../check/testdata/realworld", "testdata/realworld"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.Dockerfile"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no real-world Dockerfiles in %s (%v)", dir, err)
		}
		files = append(files, m...)
	}
	return files
}

// buildkitTargets parses df as BuildKit's frontend does (parser, then instructions.Parse with its
// linter), then checks what dockerfile2llb checks of every stage before building any (base name
// and platform non-empty and valid once the global args, unset ones empty, are expanded), and
// returns the targets BuildKit builds: "" (the last stage) and every named stage.
func buildkitTargets(df []byte, plat string) ([]string, error) {
	res, err := parser.Parse(bytes.NewReader(df))
	if err != nil {
		return nil, err
	}
	stages, metaArgs, err := instructions.Parse(res.AST, linter.New(&linter.Config{}))
	if err != nil {
		return nil, err
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("file with no instructions")
	}
	lex := shell.NewLex(res.EscapeToken)
	env := []string{
		"TARGETPLATFORM=" + plat, "TARGETOS=" + strings.Split(plat, "/")[0],
		"TARGETARCH=" + strings.Split(plat, "/")[1], "TARGETVARIANT=",
		"BUILDPLATFORM=linux/amd64", "BUILDOS=linux", "BUILDARCH=amd64", "BUILDVARIANT=",
	}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			v := ""
			if kv.Value != nil {
				v, _, err = lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(env))
				if err != nil {
					return nil, err
				}
			}
			env = append(env, kv.Key+"="+v)
		}
	}
	// dockerfile2llb expands every stage's base name and platform, reachable or not.
	for _, s := range stages {
		base, _, err := lex.ProcessWord(s.BaseName, shell.EnvsFromSlice(env))
		if err != nil {
			return nil, err
		}
		if base == "" {
			return nil, fmt.Errorf("line %d: base name (%s) should not be blank", s.Location[0].Start.Line, s.BaseName)
		}
		if s.Platform != "" {
			p, _, err := lex.ProcessWord(s.Platform, shell.EnvsFromSlice(env))
			if err != nil {
				return nil, err
			}
			if _, err := platform.Parse(p); err != nil {
				return nil, fmt.Errorf("line %d: platform %q: %v", s.Location[0].Start.Line, p, err)
			}
		}
	}
	targets := []string{""}
	for _, s := range stages {
		if s.Name != "" {
			targets = append(targets, s.Name)
		}
	}
	return targets, nil
}

// TestRealWorldFrontend holds strata's frontend to BuildKit's on real-world Dockerfiles: every
// file BuildKit's parser, instructions and dockerfile2llb's up-front stage checks accept must parse
// in strata too, for the default target and each named stage, for linux/amd64 and linux/arm64
// (build args the file declares left unset), with a resolver serving an empty image for any base.
func TestRealWorldFrontend(t *testing.T) {
	files := realWorldFiles(t)
	if len(files) < 85 {
		t.Fatalf("only %d real-world Dockerfiles, want at least 85", len(files))
	}
	accepted, builds := 0, 0
	otherFrontend := map[string]string{}
	gitFiles := map[string]bool{} // files with an ADD of a git repository strata parsed
	refusedFiles := map[string]bool{}
	for _, f := range files {
		df, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A `# syntax=` naming another frontend image has BuildKit run that image; strata refuses
		// it (it is that frontend itself), and the user's way out is the BUILDKIT_SYNTAX override.
		var args map[string]string
		if ref, _, _, ok := parser.DetectSyntax(df); ok && !IsDockerfileFrontend(ref) {
			otherFrontend[f] = ref
			args = map[string]string{"BUILDKIT_SYNTAX": "docker/dockerfile:1"}
		}
		bkAccepts := false
		for _, plat := range []string{"linux/amd64", "linux/arm64"} {
			targets, err := buildkitTargets(df, plat)
			if err != nil {
				t.Logf("BuildKit refuses %s (%s, build args unset): %v", f, plat, err)
				// strata must refuse it too.
				if _, serr := Parse(context.Background(), Options{
					Dockerfile: df, Filename: filepath.Base(f), BuildArgs: args,
					Platform: ocispec.Platform{OS: "linux", Architecture: strings.Split(plat, "/")[1]},
					Resolver: realWorldImages{},
				}); serr == nil {
					t.Errorf("strata accepts %s (%s), which BuildKit refuses: %v", f, plat, err)
				}
				break
			}
			bkAccepts = true
			p := ocispec.Platform{OS: "linux", Architecture: strings.Split(plat, "/")[1]}
			for _, target := range targets {
				builds++
				b, err := Parse(context.Background(), Options{
					Dockerfile: df, Filename: filepath.Base(f), Target: target, BuildArgs: args,
					Platform: p, BuildPlatform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
					Resolver: realWorldImages{},
				})
				if err != nil {
					refusedFiles[f] = true
					t.Errorf("strata refuses what BuildKit accepts: %s (target %q, %s): %v", f, target, plat, err)
					continue
				}
				for _, st := range b.Stages {
					for _, step := range st.Steps {
						if step.Copy != nil && len(step.Copy.Git) > 0 {
							gitFiles[f] = true
						}
					}
				}
			}
		}
		if bkAccepts {
			accepted++
		}
	}
	for _, f := range slices.Sorted(maps.Keys(otherFrontend)) {
		ref := otherFrontend[f]
		t.Logf("%s names another frontend (# syntax=%s): parsed with --build-arg BUILDKIT_SYNTAX=docker/dockerfile:1", f, ref)
	}
	// ADD of a git repository was the last refusal (buildx, BuildKit, moby and tonistiigi/xx
	// use it): those files must parse now, their git sources read as BuildKit reads them.
	if len(gitFiles) < 4 {
		t.Errorf("%d real-world Dockerfiles with an ADD of a git repository parsed, want at least 4", len(gitFiles))
	}
	t.Logf("frontend: %d real-world Dockerfiles, BuildKit accepts %d, strata refuses %d of them (%d target/platform parses; %d with the BUILDKIT_SYNTAX override; %d with ADD of a git repository)",
		len(files), accepted, len(refusedFiles), builds, len(otherFrontend), len(gitFiles))
}
