package subrequest

import (
	"bytes"
	"strings"
	"testing"
)

const df = `ARG REG=docker.io
ARG TAG=1
# BASEIMG picks the toolchain
ARG BASEIMG
ARG NOTUSED

# builder compiles
FROM ${REG}/golang:${TAG} AS builder
# GOFLAGS passes flags to go
ARG GOFLAGS=-trimpath
ARG BASEIMG
RUN --mount=type=secret,id=netrc,required --mount=type=ssh,id=gh true

FROM builder AS test
ARG TESTARG
RUN --mount=type=secret,target=/run/secrets/tok true

FROM scratch
COPY --from=0 /out /out
`

// The outline follows the stages the target needs (base, --from by name or index) and nothing
// else, takes build-arg values over defaults, and inherits a global ARG's description.
func TestOutline(t *testing.T) {
	o, err := OutlineOf([]byte(df), "", map[string]string{"TAG": "2"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range o.Args {
		names = append(names, a.Name+"="+a.Value)
	}
	if got, want := strings.Join(names, " "), "REG=docker.io TAG=2 GOFLAGS=-trimpath BASEIMG="; got != want {
		t.Errorf("args %q, want %q", got, want)
	}
	if o.Args[3].Description != "picks the toolchain" || o.Args[2].Description != "passes flags to go" {
		t.Errorf("descriptions: %+v", o.Args)
	}
	if len(o.Secrets) != 1 || o.Secrets[0] != (Secret{Name: "netrc", Required: true, Line: 12}) {
		t.Errorf("secrets %+v", o.Secrets)
	}
	if len(o.SSH) != 1 || o.SSH[0].Name != "gh" {
		t.Errorf("ssh %+v", o.SSH)
	}
	o, err = OutlineOf([]byte(df), "TEST", nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Name != "test" || len(o.Secrets) != 2 || o.Secrets[1].Name != "tok" {
		t.Errorf("target test: %+v", o)
	}
	var buf bytes.Buffer
	PrintOutline(&buf, o)
	if !strings.HasPrefix(buf.String(), "TARGET: test\n\nBUILD ARG ") {
		t.Errorf("text:\n%s", buf.String())
	}
	if _, err := OutlineOf([]byte(df), "nope", nil); err == nil {
		t.Error("unknown target accepted")
	}
}

func TestTargets(t *testing.T) {
	ts, err := Targets([]byte(df))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 || ts[0].Description != "compiles" || !ts[2].Default || ts[2].Name != "" {
		t.Errorf("%+v", ts)
	}
}
