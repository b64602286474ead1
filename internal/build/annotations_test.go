package build

import (
	"maps"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Annotations land where BuildKit's exporter puts them: unprefixed and manifest: on the manifest,
// manifest-descriptor: on its descriptor, another platform's nowhere; flags come before the
// output's attributes, so an attribute wins; index annotations fail for a single manifest.
func TestAnnotationsFor(t *testing.T) {
	flags, err := ParseAnnotations([]string{
		"org.opencontainers.image.title=flag", "manifest:a=1", "manifest-descriptor:d=2",
		"manifest[linux/amd64]:p=3", "manifest[linux/arm64]:other=4", "manifest-descriptor[linux/arm64/v8]:other=5",
	})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := ParseOutputs([]string{"type=oci,dest=x,annotation.org.opencontainers.image.title=attr,annotation-manifest-descriptor.e=6"}, false)
	if err != nil {
		t.Fatal(err)
	}
	amd64 := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	man, desc, err := annotationsFor(append(flags, outs[0].Annotations...), amd64, "--output type=oci")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"org.opencontainers.image.title": "attr", "a": "1", "p": "3"}; !maps.Equal(man, want) {
		t.Errorf("manifest annotations %v, want %v", man, want)
	}
	if want := map[string]string{"d": "2", "e": "6"}; !maps.Equal(desc, want) {
		t.Errorf("descriptor annotations %v, want %v", desc, want)
	}
	for _, f := range []string{"index:i=1", "index-descriptor:i=1"} {
		a, err := ParseAnnotations([]string{f})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := annotationsFor(a, amd64, "--output type=image"); err == nil || !strings.Contains(err.Error(), "single platform") {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, bad := range []string{"novalue", "bogus:a=b", "manifest[linux]:a=b"} {
		if _, err := ParseAnnotations([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("--annotation %s: %v", bad, err)
		}
	}
}
