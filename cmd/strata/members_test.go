package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/layerblob"
	"github.com/strata-build/strata/internal/testenv"
)

// Layer blobs are gzip members (internal/layerblob): a re-run COPY copies the members of the
// files that did not change from the previous blob of the same step. These tests check the
// incremental blob with tools that are not strata, and that it is the blob a cold build writes.

// membersProject is a context (copied to /: a created /app would take the build's time, making
// two builds' layers differ) of 600 small text files and one of 6 MB (members of its own).
func membersProject(e *env) string {
	files := map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY . /\n"}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 600 {
		var b strings.Builder
		for b.Len() < 200+r.IntN(8000) {
			fmt.Fprintf(&b, "line %d of file %d: value=%d\n", b.Len(), i, r.IntN(1e6))
		}
		files[fmt.Sprintf("src/m%02d/f%04d.txt", i%20, i)] = b.String()
	}
	var big strings.Builder
	for big.Len() < 6<<20 {
		fmt.Fprintf(&big, "record %d %d\n", big.Len(), r.IntN(1e9))
	}
	files["data/big.txt"] = big.String()
	return e.project("members", files)
}

// ociLastLayer builds ctx into an OCI archive and returns the unpacked layout and the digest of
// the image's last layer (the COPY).
func ociLastLayer(t *testing.T, e *env, name string, args ...string) (layout, layer string) {
	t.Helper()
	dest := filepath.Join(e.dir, name+".tar")
	e.build(append([]string{"-t", "members:" + name, "-o", "type=oci,dest=" + dest}, args...)...)
	layout = filepath.Join(e.dir, name)
	untar(t, dest, layout)
	var idx struct{ Manifests []struct{ Digest string } }
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(layout, "index.json"))), &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %v", err)
	}
	var m struct{ Layers []struct{ Digest string } }
	if err := json.Unmarshal([]byte(readFile(t, blobPath(layout, idx.Manifests[0].Digest))), &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest: %v", err)
	}
	return layout, m.Layers[len(m.Layers)-1].Digest
}

// memberKeys reads the member index the store keeps for a layer blob.
func memberKeys(t *testing.T, e *env, blob string) map[[32]byte]bool {
	t.Helper()
	p := filepath.Join(e.root, "blobs", "sha256", strings.TrimPrefix(blob, "sha256:"))
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(e.root, "members", strings.TrimPrefix(blob, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	x, err := layerblob.Decode(data, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	keys := map[[32]byte]bool{}
	for _, m := range x.Members {
		keys[m.Key] = true
	}
	return keys
}

func TestIncrementalLayerBlob(t *testing.T) {
	testenv.RequireTools(t, "skopeo", "umoci", "tar")
	e := newEnv(t)
	ctx := membersProject(e)
	_, layer1 := ociLastLayer(t, e, "v1", ctx)
	if _, err := os.Stat(filepath.Join(e.root, "members", strings.TrimPrefix(layer1, "sha256:"))); err != nil {
		t.Fatalf("no member index for the COPY layer: %v", err)
	}

	edited := filepath.Join(ctx, "src/m07/f0007.txt")
	cold := newEnv(t) // another store, given the same inputs: builds with --no-cache
	steps := []struct {
		name    string
		content string
		prepare func(prev string) // breaks what the incremental commit would copy from
	}{
		{"v2", "edited once\n", func(string) {}},
		{"v3", "edited twice\n", func(prev string) {
			p := filepath.Join(e.root, "members", strings.TrimPrefix(prev, "sha256:"))
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0xff
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"v4", "edited three times\n", func(prev string) {
			if err := os.Remove(filepath.Join(e.root, "blobs", "sha256", strings.TrimPrefix(prev, "sha256:"))); err != nil {
				t.Fatal(err)
			}
		}},
	}
	prev := layer1
	for _, s := range steps {
		s.prepare(prev)
		if err := os.WriteFile(edited, []byte(s.content), 0o644); err != nil {
			t.Fatal(err)
		}
		layout, inc := ociLastLayer(t, e, s.name, ctx)
		coldLayout, want := ociLastLayer(t, cold, s.name, "--no-cache", ctx)
		if inc == prev {
			t.Fatalf("%s: the edit did not change the layer", s.name)
		}
		if s.name == "v2" {
			// Content-defined cuts: the one-file edit leaves all but one or two members as they were.
			a, b := memberKeys(t, e, prev), memberKeys(t, e, inc)
			same := 0
			for k := range b {
				if a[k] {
					same++
				}
			}
			if len(b) < 20 || same < len(b)-2 {
				t.Errorf("v2: %d of %d members also in v1's blob", same, len(b))
			}
		}
		if inc != want {
			out, _ := exec.Command("bash", "-c", "diff <(tar --full-time -tvzf "+blobPath(layout, inc)+") <(tar --full-time -tvzf "+blobPath(coldLayout, want)+")").CombinedOutput()
			t.Fatalf("%s: incremental layer %s (tar %s), a cold build in another store wrote %s (tar %s)\n%s", s.name,
				inc, uncompressedDigest(t, blobPath(layout, inc)), want, uncompressedDigest(t, blobPath(coldLayout, want)), out)
		}
		// Independent readers: tar -xzf on the blob itself, umoci on the image.
		x := filepath.Join(e.dir, s.name+"-x")
		os.MkdirAll(x, 0o755)
		if out, err := exec.Command("tar", "-xzf", blobPath(layout, inc), "-C", x).CombinedOutput(); err != nil {
			t.Fatalf("%s: tar -xzf: %v\n%s", s.name, err, out)
		}
		if got := readFile(t, filepath.Join(x, "src/m07/f0007.txt")); got != s.content {
			t.Errorf("%s: tar -xzf gives %q", s.name, got)
		}
		if got := readFile(t, filepath.Join(x, "data/big.txt")); got != readFile(t, filepath.Join(ctx, "data/big.txt")) {
			t.Errorf("%s: big file differs after tar -xzf", s.name)
		}
		rootfs := umociUnpack(t, layout, s.name)
		if got := readFile(t, filepath.Join(rootfs, "src/m07/f0007.txt")); got != s.content {
			t.Errorf("%s: umoci gives %q", s.name, got)
		}
		prev = inc
	}

	// A registry takes the incremental blob, and what comes back is the same blob.
	ref := testReg.Addr() + "/e2e/members:v4"
	e.build("--push", "-t", ref, ctx)
	var info struct{ Layers []string }
	skopeoJSON(t, &info, "inspect", "--tls-verify=false", "docker://"+ref)
	if len(info.Layers) == 0 || info.Layers[len(info.Layers)-1] != prev {
		t.Fatalf("pushed layers %v, want last %s", info.Layers, prev)
	}
	pulled := filepath.Join(e.dir, "pulled")
	if err := testenv.Skopeo("copy", "--quiet", "--src-tls-verify=false", "docker://"+ref, "oci:"+pulled+":v4"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(umociUnpack(t, pulled, "v4"), "src/m07/f0007.txt")); got != steps[2].content {
		t.Errorf("pulled image has %q", got)
	}
}
