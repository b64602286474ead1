package binfmt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDir, dir)
	arm64 := ocispec.Platform{OS: "linux", Architecture: "arm64"}
	if err := Check(ocispec.Platform{OS: "linux", Architecture: "amd64"}); err != nil {
		t.Fatalf("native amd64: %v", err) // the tests run on amd64 hosts
	}
	err := Check(arm64)
	if err == nil || !strings.Contains(err.Error(), "linux/arm64") || !strings.Contains(err.Error(), "apt-get install qemu-user-static") {
		t.Fatalf("missing handler: %v", err)
	}
	handler := filepath.Join(dir, "qemu-aarch64")
	write := func(s string) {
		if err := os.WriteFile(handler, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
	if err := Check(arm64); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("disabled handler: %v", err)
	}
	write("enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: P\n")
	if err := Check(arm64); err == nil || !strings.Contains(err.Error(), "F flag") {
		t.Fatalf("handler without F: %v", err)
	}
	write("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
	if err := Check(arm64); err != nil {
		t.Fatalf("registered handler: %v", err)
	}
	if err := Check(ocispec.Platform{OS: "windows", Architecture: "amd64"}); err == nil {
		t.Fatal("windows accepted")
	}
}
