package solver

import (
	"fmt"
	"io"
	"time"

	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/store"
)

// startPull opens the progress line of a lazy layer's download. Layers are fetched when a step
// first runs on them, not at FROM, so the pull is its own line (BuildKit shows the same bytes
// under FROM because it pulls eagerly).
func (s *solver) startPull(l store.Layer) *progress.Vertex {
	if s.opts.Progress == nil {
		return nil
	}
	from := ""
	if l.Remote != "" {
		from = " from " + l.Remote
	}
	return s.opts.Progress.Start(fmt.Sprintf("[internal] pull layer %s (%s)%s", l.Digest.Encoded()[:12], store.FormatSize(l.Size), from))
}

// byteCounter reports the bytes written through it as Bytes events.
type byteCounter struct {
	w      io.Writer
	report func(what string, current, total int64)
	what   string
	total  int64
	n      int64
}

func newByteCounter(w io.Writer, v *progress.Vertex, what string, total int64) *byteCounter {
	return &byteCounter{w: w, report: v.ByteMeter(100 * time.Millisecond), what: what, total: total}
}

func (c *byteCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.report(c.what, c.n, c.total)
	return n, err
}
