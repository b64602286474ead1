package main

import (
	"strings"
	"testing"
)

// A line longer than the parser reads is reported at its own line, and the error does not echo
// the megabyte back.
func TestOverlongLineNamed(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("long", map[string]string{
		"Dockerfile": "FROM scratch\nLABEL a=" + strings.Repeat("x", 1<<20) + "\nCOPY a /a\n",
	})
	r := e.buildFail(ctx)
	if !strings.Contains(r.out, "ERROR: Dockerfile:2: line is 1048584 bytes, more than the 65535") {
		t.Errorf("the error does not name line 2:\n%.2000s", r.out)
	}
	if len(r.out) > 16<<10 {
		t.Errorf("the error output is %d bytes: the long line was echoed", len(r.out))
	}
}
