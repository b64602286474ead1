package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/testenv"
)

const (
	reproEpoch   = "1700000000"
	reproCreated = "2023-11-14T22:13:20Z"
)

// No ARG SOURCE_DATE_EPOCH: no step reads the epoch, so none of their keys may depend on it.
const reproDockerfile = `FROM {{BASE}}
WORKDIR /app
COPY . .
RUN mkdir -p /var/out && cat /app/a.txt > /var/out/copy && touch /var/out/stamp
ENV MODE=prod
`

// reproProject writes the context under e.dir/name with every file and directory dated mtime,
// except old.txt, which predates the epoch and must keep its time.
func reproProject(e *env, name string, mtime time.Time) string {
	e.t.Helper()
	dir := e.project(name, map[string]string{
		"Dockerfile": reproDockerfile,
		"a.txt":      "alpha\n",
		"sub/b.txt":  "beta\n",
		"old.txt":    "old\n",
	})
	old := time.Unix(1000000000, 0)
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		t := mtime
		if filepath.Base(p) == "old.txt" {
			t = old
		}
		return os.Chtimes(p, t, t)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return dir
}

type ociHistory struct {
	Created    string `json:"created"`
	CreatedBy  string `json:"created_by"`
	EmptyLayer bool   `json:"empty_layer"`
}

type reproConfig struct {
	Created string       `json:"created"`
	History []ociHistory `json:"history"`
	RootFS  struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// SOURCE_DATE_EPOCH with rewrite-timestamp=true gives the same image whatever the store, the
// context's place and file times, and the time of the build; like BuildKit, created and the new
// history entries are the epoch, file times in the new layers are clamped to it and the base
// image's layers and history are left alone. The cache keys do not see the epoch.
func TestReproSourceDateEpoch(t *testing.T) {
	testenv.RequireTools(t, "skopeo", "tar")
	now := time.Now()
	e1, e2 := newEnv(t), newEnv(t)
	ctx1 := reproProject(e1, "checkout-one", now.Add(-2*time.Hour))
	ctx2 := reproProject(e2, "elsewhere/checkout-two", now.Add(-time.Hour))

	// Store one builds without the epoch first: the build with it must be fully cached.
	e1.build("-o", "type=oci,dest="+filepath.Join(e1.dir, "plain.tar"), ctx1)
	time.Sleep(1100 * time.Millisecond)
	out1 := filepath.Join(e1.dir, "one.tar")
	iid1 := filepath.Join(e1.dir, "iid")
	r := e1.build("--build-arg", "SOURCE_DATE_EPOCH="+reproEpoch, "--iidfile", iid1, "-o", "type=oci,dest="+out1+",rewrite-timestamp=true", ctx1)
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("SOURCE_DATE_EPOCH made cached steps miss: %v\n%s", m, r.out)
	}
	time.Sleep(1100 * time.Millisecond)
	out2 := filepath.Join(e2.dir, "two.tar")
	e2.build("--build-arg", "SOURCE_DATE_EPOCH="+reproEpoch, "-o", "type=oci,dest="+out2+",rewrite-timestamp=true", ctx2)

	d1, d2 := inspectDigest(t, "oci-archive:"+out1), inspectDigest(t, "oci-archive:"+out2)
	if d1 != d2 {
		t.Fatalf("same sources, same epoch, different images: %s (cached, store one) and %s (fresh, store two)", d1, d2)
	}
	if got := readFile(t, iid1); got != d1 {
		t.Errorf("--iidfile %s, exported image %s", got, d1)
	}

	// The epoch from the environment, as buildx passes it; a cached rebuild gives the same image.
	time.Sleep(1100 * time.Millisecond)
	out3 := filepath.Join(e2.dir, "three.tar")
	r = e2.runIn("", []string{"SOURCE_DATE_EPOCH=" + reproEpoch}, "build", "--progress=plain", "-o", "type=oci,dest="+out3+",rewrite-timestamp=true", ctx2)
	if r.err != nil {
		t.Fatalf("build with SOURCE_DATE_EPOCH in the environment: %v\n%s", r.err, r.out)
	}
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("rebuild missed %v", m)
	}
	if d := inspectDigest(t, "oci-archive:"+out3); d != d1 {
		t.Errorf("SOURCE_DATE_EPOCH from the environment: image %s, want %s", d, d1)
	}

	// A push of the re-timed image is the same image, every blob in place (skopeo copies it);
	// in the same build an output without rewrite-timestamp keeps the layers as built.
	ref := testReg.Addr() + "/e2e/repro:1"
	out5 := filepath.Join(e2.dir, "five.tar")
	md := filepath.Join(e2.dir, "md.json")
	e2.build("--build-arg", "SOURCE_DATE_EPOCH="+reproEpoch, "-t", ref, "--metadata-file", md,
		"-o", "type=registry,rewrite-timestamp=true", "-o", "type=oci,dest="+out5, ctx2)
	if d := inspectDigest(t, "--tls-verify=false", "docker://"+ref); d != d1 {
		t.Errorf("pushed %s, want %s", d, d1)
	}
	if err := testenv.Skopeo("copy", "--quiet", "--src-tls-verify=false", "docker://"+ref, "oci:"+filepath.Join(e2.dir, "pulled")+":1"); err != nil {
		t.Errorf("pull the pushed image: %v", err)
	}
	if d := inspectDigest(t, "oci-archive:"+out5); d == d1 {
		t.Errorf("the output without rewrite-timestamp got the re-timed image")
	}
	if got := readFile(t, md); !strings.Contains(got, d1) {
		t.Errorf("--metadata-file does not name the re-timed image %s:\n%s", d1, got)
	}

	// The re-timed copies and the records remembering them are sound store content.
	for _, e := range []*env{e1, e2} {
		if r := e.run("store", "verify"); r.err != nil {
			t.Errorf("strata store verify: %v\n%s", r.err, r.out)
		}
	}

	// The base image as the registry has it.
	var base reproConfig
	skopeoJSON(t, &base, "inspect", "--config", "--tls-verify=false", "docker://"+baseRef)
	var baseManifest struct{ Layers []struct{ Digest string } }
	skopeoJSON(t, &baseManifest, "inspect", "--raw", "--tls-verify=false", "docker://"+baseRef)

	var cfg reproConfig
	skopeoJSON(t, &cfg, "inspect", "--config", "oci-archive:"+out1)
	checkReproConfig(t, "rewrite-timestamp=true", cfg, base)

	// The layers: the base's untouched, the new ones with no time after the epoch (GNU tar reads them).
	layout := filepath.Join(e1.dir, "layout")
	untar(t, out1, layout)
	var idx struct{ Manifests []struct{ Digest string } }
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(layout, "index.json"))), &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %v %+v", err, idx)
	}
	var m struct {
		Layers []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal([]byte(readFile(t, blobPath(layout, idx.Manifests[0].Digest))), &m); err != nil {
		t.Fatal(err)
	}
	nb := len(base.RootFS.DiffIDs)
	if len(m.Layers) <= nb || len(baseManifest.Layers) != nb {
		t.Fatalf("image has %d layers, base %d (%d in its manifest)", len(m.Layers), nb, len(baseManifest.Layers))
	}
	for i := 0; i < nb; i++ {
		if m.Layers[i].Digest != baseManifest.Layers[i].Digest || cfg.RootFS.DiffIDs[i] != base.RootFS.DiffIDs[i] || m.Layers[i].Annotations != nil {
			t.Errorf("base layer %d rewritten: %+v, base has %s", i, m.Layers[i], baseManifest.Layers[i].Digest)
		}
	}
	for i, l := range m.Layers[nb:] {
		if l.Annotations["buildkit/rewritten-timestamp"] != reproEpoch {
			t.Errorf("layer %d: annotations %v, want buildkit/rewritten-timestamp=%s as BuildKit writes", nb+i, l.Annotations, reproEpoch)
		}
	}
	epoch := time.Unix(1700000000, 0).UTC()
	times := map[string]time.Time{}
	for _, l := range m.Layers[nb:] {
		for name, tm := range layerTimes(t, blobPath(layout, l.Digest)) {
			times[name] = tm
			if tm.After(epoch) {
				t.Errorf("layer %s: %s dated %s, after the epoch", l.Digest, name, tm)
			}
		}
	}
	for name, want := range map[string]time.Time{"app/a.txt": epoch, "app/sub/b.txt": epoch, "var/out/stamp": epoch, "app/old.txt": time.Unix(1000000000, 0).UTC()} {
		if got, ok := times[name]; !ok || !got.Equal(want) {
			t.Errorf("%s: dated %v (listed %v), want %v", name, got, ok, want)
		}
	}

	// Without rewrite-timestamp, BuildKit still dates the config by the epoch but leaves the file
	// times, so the image differs; nothing is rebuilt for it.
	out4 := filepath.Join(e2.dir, "four.tar")
	r = e2.build("--build-arg", "SOURCE_DATE_EPOCH="+reproEpoch, "-o", "type=oci,dest="+out4, ctx2)
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("build without rewrite-timestamp missed %v", m)
	}
	if d := inspectDigest(t, "oci-archive:"+out4); d == d1 {
		t.Errorf("without rewrite-timestamp the image is the re-timed one (%s)", d)
	}
	var cfg4 reproConfig
	skopeoJSON(t, &cfg4, "inspect", "--config", "oci-archive:"+out4)
	checkReproConfig(t, "without rewrite-timestamp", cfg4, base)
}

func checkReproConfig(t *testing.T, what string, cfg, base reproConfig) {
	t.Helper()
	if cfg.Created != reproCreated {
		t.Errorf("%s: created %q, want %q", what, cfg.Created, reproCreated)
	}
	if len(cfg.History) <= len(base.History) {
		t.Fatalf("%s: history %+v is no longer than the base's %+v", what, cfg.History, base.History)
	}
	for i, h := range cfg.History {
		if i < len(base.History) {
			if h != base.History[i] {
				t.Errorf("%s: base history entry %d is %+v, base has %+v", what, i, h, base.History[i])
			}
			continue
		}
		if h.Created != reproCreated {
			t.Errorf("%s: history entry %d (%s) created %q, want %q", what, i, h.CreatedBy, h.Created, reproCreated)
		}
	}
}

func blobPath(layout, d string) string {
	return filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
}

// layerTimes lists a gzip layer with GNU tar and returns each entry's modification time.
func layerTimes(t *testing.T, blob string) map[string]time.Time {
	t.Helper()
	cmd := exec.Command("tar", "--full-time", "--numeric-owner", "-tvzf", blob)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tar -tvzf %s: %v", blob, err)
	}
	times := map[string]time.Time{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		// -rw-r--r-- 0/0  6 2023-11-14 22:13:20 app/a.txt
		f := strings.Fields(sc.Text())
		if len(f) < 6 {
			t.Fatalf("tar listing line %q", sc.Text())
		}
		tm, err := time.Parse("2006-01-02 15:04:05", f[3]+" "+f[4])
		if err != nil {
			t.Fatalf("tar listing line %q: %v", sc.Text(), err)
		}
		times[strings.TrimSuffix(f[5], "/")] = tm
	}
	return times
}
