package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/testenv"
)

// Layers go to the registry while the build still runs: the 1 MiB COPY layer is uploaded during
// the RUN that follows it, not after the last step. The image push and the cache export to the
// same repository share the work: every blob is uploaded once and asked about (HEAD) at most once.
func TestUploadsDuringBuild(t *testing.T) {
	proxy, reg := cacheProxy(t)
	e := newEnv(t)
	ctx := e.project("eager", map[string]string{
		"Dockerfile": "FROM " + reg + "/busybox:latest\n" +
			"COPY big.bin /big.bin\n" +
			"RUN sleep 3 && echo done > /done\n",
		"big.bin": bigFile(t, 1<<20),
	})
	proxy.Reset()
	cmd := exec.Command(strataBin, "--root", e.root, "build", "--progress=plain",
		"--cache-to", "type=registry,ref="+reg+"/eager:cache,mode=max", "--push", "-t", reg+"/eager:1", ctx)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Only the COPY layer is that big. Seen uploaded before the build prints its push, it went
	// up during the RUN's three seconds.
	var sentDuringBuild bool
	var err error
wait:
	for {
		select {
		case err = <-exited:
			break wait
		case <-time.After(50 * time.Millisecond):
			if !sentDuringBuild && proxy.Stats().BlobBytesUp >= 1<<20 {
				sentDuringBuild = !strings.Contains(out.String(), "pushing [")
			}
		}
	}
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out.String())
	}
	if !sentDuringBuild {
		t.Errorf("the COPY layer was not uploaded while the RUN after it was running\n%s", out.String())
	}
	s := proxy.Stats()
	// New blobs: the COPY layer, the RUN layer, the image config, the cache config; the base
	// layer is mounted from busybox's repository.
	if s.BlobUploads != 4 {
		t.Errorf("%d upload sessions carried bytes, want 4 (each new blob once)\n%+v", s.BlobUploads, s)
	}
	if s.BlobBytesUp < 1<<20 || s.BlobBytesUp > 1<<20+64<<10 {
		t.Errorf("%d bytes uploaded, want the 1 MiB layer once plus small blobs", s.BlobBytesUp)
	}
	// Layers: base, COPY, RUN; configs: image and cache. Each HEADed at most once.
	if s.BlobHeads > 5 {
		t.Errorf("%d blob HEAD requests for 5 distinct blobs: the image push and the cache export should share what they learned\n%+v", s.BlobHeads, s)
	}
}

// Stages that start from the same lazily held base and run at the same time fetch its layer once.
func TestParallelStagesFetchBaseOnce(t *testing.T) {
	proxy, reg := cacheProxy(t)
	e := newEnv(t)
	ctx := e.project("twostage", map[string]string{
		"Dockerfile": "FROM " + reg + "/busybox:latest AS a\nRUN echo a > /a\n" +
			"FROM " + reg + "/busybox:latest AS b\nRUN echo b > /b\n" +
			"FROM " + reg + "/busybox:latest\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n",
	})
	proxy.Reset()
	r := e.build(ctx)
	s := proxy.Stats()
	// busybox's one layer is about 1 MiB; its manifest and config are small.
	if s.BlobBytesDown < 512<<10 || s.BlobBytesDown > 1<<20+256<<10 {
		t.Errorf("%d bytes of blobs pulled, want busybox's layer once\n%+v\n%s", s.BlobBytesDown, s, r.out)
	}
}

// A base layer is unpacked while it downloads. When the download is cut off and retried, the
// half-unpacked copy is thrown away and the layer is unpacked again from the verified blob: the
// RUN on top of it sees the whole base.
func TestStreamedUnpackSurvivesCutDownload(t *testing.T) {
	proxy, reg := cacheProxy(t)
	out, err := testenv.SkopeoOutput("inspect", "--raw", "--tls-verify=false", "docker://"+reg+"/busybox:latest")
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var m struct {
		Layers []struct {
			Digest string
			Size   int64
		}
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("busybox layers: %v %s", err, out)
	}
	layer := m.Layers[0]
	files := map[string]string{
		"Dockerfile": "FROM " + reg + "/busybox:latest\nRUN ls -lR /bin /etc | md5sum > /sum\n",
	}
	clean := newEnv(t)
	want := filepath.Join(clean.dir, "want")
	clean.build("-o", "type=local,dest="+want, clean.project("cut", files))

	e := newEnv(t)
	ctx := e.project("cut", files)
	proxy.Reset()
	proxy.Inject(testenv.Fault{Method: "GET", Path: regexp.MustCompile(regexp.QuoteMeta(layer.Digest) + "$"), Times: 1, CutBody: true})
	dest := filepath.Join(e.dir, "got")
	r := e.build("-o", "type=local,dest="+dest, ctx)
	if s := proxy.Stats(); s.BlobBytesDown < layer.Size*5/4 {
		t.Fatalf("the first download was not cut (%d bytes down for a %d-byte layer)\n%s", s.BlobBytesDown, layer.Size, r.out)
	}
	if got, w := readFile(t, filepath.Join(dest, "sum")), readFile(t, filepath.Join(want, "sum")); got != w {
		t.Errorf("after a cut download the RUN saw a different base: %q, want %q", got, w)
	}
}

// A re-timed image (rewrite-timestamp) pushes copies of its new layers made at the end; the
// layers as built are not sent to its repository during the build.
func TestRewrittenImageNotPreuploaded(t *testing.T) {
	proxy, reg := cacheProxy(t)
	e := newEnv(t)
	ctx := e.project("retimed", map[string]string{
		"Dockerfile": "FROM " + reg + "/busybox:latest\nCOPY big.bin /big.bin\nRUN echo x > /x\n",
		"big.bin":    bigFile(t, 256<<10),
	})
	proxy.Reset()
	e.build("--build-arg", "SOURCE_DATE_EPOCH=1700000000",
		"--output", "type=registry,name="+reg+"/retimed:1,rewrite-timestamp=true", ctx)
	// The two re-timed layers and the config; the base layer is mounted.
	if s := proxy.Stats(); s.BlobUploads != 3 {
		t.Errorf("%d upload sessions carried bytes, want 3\n%+v", s.BlobUploads, s)
	}
}
