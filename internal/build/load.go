package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/strata-build/strata/internal/daemonload"
	"github.com/strata-build/strata/internal/progress"
)

// loadPlan is --load: buildx's shorthand for a docker output loaded into the daemon. strata
// writes the docker archive to a scratch file and loads it into the Docker or Podman daemon
// that answers; with none, the image is still tagged in strata's own store.
type loadPlan struct {
	target  daemonload.Target
	archive string
	dir     string
}

// planLoad adds the outputs --load needs to o and returns what to do once they are written
// (nil when there is no daemon to load into).
func planLoad(ctx context.Context, o *Options, find func(context.Context) (daemonload.Target, bool)) (*loadPlan, error) {
	if !slices.ContainsFunc(o.Outputs, func(out Output) bool { return out.Type == "image" }) {
		o.Outputs = append(o.Outputs, Output{Type: "image"})
	}
	t, ok := find(ctx)
	if !ok {
		o.Warn("--load: no Docker or Podman daemon is reachable; the image is in strata's store only (strata images)")
		return nil, nil
	}
	dir, err := os.MkdirTemp("", "strata-load-")
	if err != nil {
		return nil, fmt.Errorf("--load: %w", err)
	}
	p := &loadPlan{target: t, dir: dir, archive: filepath.Join(dir, "image.tar")}
	o.Outputs = append(o.Outputs, Output{Type: "docker", Dest: p.archive, Tar: true})
	return p, nil
}

func (p *loadPlan) load(ctx context.Context, rec *progress.Recorder) error {
	v := rec.Start("loading image into " + p.target.String())
	if err := p.target.Load(ctx, p.archive); err != nil {
		err = fmt.Errorf("--load: %w", err)
		v.Fail(err)
		return err
	}
	v.Done()
	return nil
}

func (p *loadPlan) cleanup() { os.RemoveAll(p.dir) }

func findDaemon(ctx context.Context) (daemonload.Target, bool) {
	return daemonload.Find(ctx, daemonload.System())
}
