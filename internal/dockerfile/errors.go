package dockerfile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// Error is every user-facing error Parse returns. Line is 0 when the error is not tied to one
// instruction (e.g. an unknown --target).
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// toError converts an error from BuildKit's parser packages, whose line lives in a
// parser.LocationError wrapped (for instructions.Parse) in a "dockerfile parse error on line N"
// prefix that would repeat what Error already says.
func toError(file string, err error) error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	var le *parser.LocationError
	if errors.As(err, &le) {
		line := 0
		if len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
			line = le.Locations[0][0].Start.Line
		}
		msg := le.Error()
		if inner := errors.Unwrap(le); inner != nil {
			msg = inner.Error()
		}
		return &Error{File: file, Line: line, Msg: msg}
	}
	msg := err.Error()
	if i := strings.Index(msg, ": "); strings.HasPrefix(msg, "dockerfile parse error on line ") && i > 0 {
		msg = msg[i+2:]
	}
	return &Error{File: file, Msg: msg}
}

func locLine(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}
