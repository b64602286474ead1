package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/testenv"
)

// TestFlagAnnotations: --annotation and the outputs' annotation.* attributes land where BuildKit's
// exporters put them, checked with skopeo in the registry and in the OCI layout's index.json:
// manifest annotations in the pushed and the archived manifest, manifest-descriptor ones only in
// index.json, an output's attribute over the flag; index annotations are refused before building.
func TestFlagAnnotations(t *testing.T) {
	testenv.RequireTools(t, "skopeo")
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("annotations", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo a > /a\n"})
	ref := testReg.Addr() + "/e2e/annotated:v1"
	tarPath := filepath.Join(e.dir, "ann.oci.tar")
	md := filepath.Join(e.dir, "md.json")
	e.build("-t", ref, "--metadata-file", md,
		"--annotation", "org.opencontainers.image.title=from-flag",
		"--annotation", "manifest:com.example.m=m1",
		"--annotation", "manifest-descriptor:com.example.d=d1",
		"--annotation", "manifest[linux/arm64]:com.example.arm=no",
		"-o", "type=registry",
		"-o", "type=oci,dest="+tarPath+",annotation.org.opencontainers.image.title=from-attr,annotation-manifest-descriptor.com.example.d2=d2",
		ctx)

	var pushed ocispec.Manifest
	skopeoJSON(t, &pushed, "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	for k, want := range map[string]string{"org.opencontainers.image.title": "from-flag", "com.example.m": "m1"} {
		if got := pushed.Annotations[k]; got != want {
			t.Errorf("pushed manifest %s = %q, want %q (%v)", k, got, want, pushed.Annotations)
		}
	}
	for _, k := range []string{"com.example.d", "com.example.arm"} {
		if _, ok := pushed.Annotations[k]; ok {
			t.Errorf("pushed manifest carries %s: %v", k, pushed.Annotations)
		}
	}
	var meta map[string]any
	json.Unmarshal([]byte(readFile(t, md)), &meta)
	if got := inspectDigest(t, "--tls-verify=false", "docker://"+ref); meta["containerimage.digest"] != got {
		t.Errorf("metadata digest %v, registry has %s", meta["containerimage.digest"], got)
	}

	o := readOCI(t, tarPath, filepath.Join(e.dir, "ann.oci"), "v1")
	if got := o.manifest.Annotations["org.opencontainers.image.title"]; got != "from-attr" {
		t.Errorf("archived manifest title %q, want the attribute's", got)
	}
	if got := o.manifest.Annotations["com.example.m"]; got != "m1" {
		t.Errorf("archived manifest lacks the flag's manifest annotation: %v", o.manifest.Annotations)
	}
	var idx ocispec.Index
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(o.dir, "index.json"))), &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %+v", idx)
	}
	d := idx.Manifests[0].Annotations
	if d["com.example.d"] != "d1" || d["com.example.d2"] != "d2" || d[ocispec.AnnotationRefName] != "v1" {
		t.Errorf("index.json descriptor annotations %v", d)
	}
	if _, ok := o.manifest.Annotations["com.example.d"]; ok {
		t.Errorf("a descriptor annotation landed in the manifest")
	}

	r := e.buildFail("--annotation", "index:com.example.i=1", ctx)
	if !r.has("index annotations not supported for single platform export") || strings.Contains(r.out, "RUN echo") {
		t.Errorf("index annotation:\n%s", r.out)
	}
}
