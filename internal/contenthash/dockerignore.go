package contenthash

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/patternmatcher/ignorefile"
)

// ReadDockerignore returns the ignore patterns for a build. As in BuildKit, a
// "<Dockerfile name>.dockerignore" next to the Dockerfile wins over CONTEXT/.dockerignore, so
// several Dockerfiles can share one context with different ignore sets. No file means no patterns.
func ReadDockerignore(contextDir, dockerfilePath string) ([]string, error) {
	var candidates []string
	if dockerfilePath != "" {
		candidates = append(candidates, filepath.Join(filepath.Dir(dockerfilePath), filepath.Base(dockerfilePath)+".dockerignore"))
	}
	candidates = append(candidates, filepath.Join(contextDir, ".dockerignore"))
	for _, p := range candidates {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		// ignorefile is the parser BuildKit's frontend/dockerfile/dockerignore delegates to.
		patterns, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		return patterns, nil
	}
	return nil, nil
}
