package dockerfile

import (
	"errors"
	"testing"
)

func TestSyntaxDirective(t *testing.T) {
	for ref, ok := range map[string]bool{
		"docker/dockerfile":                       true,
		"docker/dockerfile:1":                     true,
		"docker/dockerfile:1.7-labs":              true,
		"docker.io/docker/dockerfile:1.4":         true,
		"docker/dockerfile-upstream:master-labs":  true,
		"docker/dockerfile@sha256:0123456789abcd": true,
		"docker/dockerfile:1@sha256:0123":         true,
		"tonistiigi/hcl":                          false,
		"ghcr.io/docker/dockerfile:1":             false,
		"docker/dockerfile-x:1":                   false,
		"localhost:5000/docker/dockerfile:1":      false,
	} {
		if got := IsDockerfileFrontend(ref); got != ok {
			t.Errorf("%s: %t, want %t", ref, got, ok)
		}
	}
	// The error names the directive's line, after a shebang-less BOM and an escape directive.
	err := checkSyntax("Dockerfile", []byte("\ufeff# escape=`\n# syntax=example/frontend\nFROM x\n"), nil)
	var fe *Error
	if !errors.As(err, &fe) || fe.Line != 2 {
		t.Fatalf("error %v, want one on line 2", err)
	}
	// BUILDKIT_SYNTAX overrides the directive, both ways.
	if err := checkSyntax("Dockerfile", []byte("# syntax=example/frontend\nFROM x\n"), map[string]string{"BUILDKIT_SYNTAX": "docker/dockerfile:1"}); err != nil {
		t.Errorf("BUILDKIT_SYNTAX naming the Dockerfile frontend: %v", err)
	}
	if err := checkSyntax("Dockerfile", []byte("FROM x\n"), map[string]string{"BUILDKIT_SYNTAX": "example/frontend"}); err == nil {
		t.Error("BUILDKIT_SYNTAX naming another frontend accepted")
	}
}
