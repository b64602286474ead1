package progress

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Renderer is a Sink that owns its output stream for the length of a build. Everything else the
// CLI prints on that stream (warnings, the error report, GC notes) goes through Writer, so a live
// display is not scribbled over and a JSON stream stays one event per line.
type Renderer interface {
	Sink
	// Writer is where other text for the same stream goes.
	Writer() io.Writer
	// Finish says the build returned (err nil on success). Only the first call counts, so the
	// CLI can call it where the real error is still in hand and again on the way out.
	Finish(err error)
	// Close ends the stream after the caller's last text; err is used if Finish never ran.
	Close(err error)
}

// Modes lists the --progress values New accepts.
const Modes = "auto, plain, tty, json or quiet"

// New picks the renderer for a --progress value: auto is tty when w is a terminal (and $TERM is
// not dumb), plain otherwise.
func New(mode string, w io.Writer) (Renderer, error) {
	switch mode {
	case "auto", "":
		if IsTerminal(w) && os.Getenv("TERM") != "dumb" {
			return NewTTY(w), nil
		}
		return passthrough{NewPlain(w), w}, nil
	case "plain":
		return passthrough{NewPlain(w), w}, nil
	case "tty":
		return NewTTY(w), nil
	case "json":
		return NewJSON(w), nil
	case "quiet":
		return passthrough{Quiet{}, w}, nil
	}
	return nil, fmt.Errorf("--progress=%s: use %s", mode, Modes)
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// terminalSize reads w's size now; a terminal can be resized between two frames.
func terminalSize(w io.Writer) (width, height int, ok bool) {
	f, isFile := w.(*os.File)
	if !isFile {
		return 0, 0, false
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 || ws.Row == 0 {
		return 0, 0, false
	}
	return int(ws.Col), int(ws.Row), true
}

// passthrough adapts the line renderers, which never redraw, to Renderer.
type passthrough struct {
	Sink
	w io.Writer
}

func (p passthrough) Writer() io.Writer { return p.w }
func (passthrough) Finish(error)        {}
func (passthrough) Close(error)         {}

// lockedWriter serialises free text with a renderer's own writes.
type lockedWriter struct {
	mu    *sync.Mutex
	write func([]byte) (int, error)
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.write(p)
}
