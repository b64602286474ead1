package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// fastRetry keeps go-containerregistry's retries against a faulted proxy in the milliseconds.
var fastRetry = remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 3})

// requireProxy starts a registry and a proxy in front of it, both closed when t ends.
func requireProxy(t *testing.T) *Proxy {
	t.Helper()
	reg := RequireRegistry(t)
	p, err := StartProxy(reg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func proxyRef(t *testing.T, p *Proxy, repoTag string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(p.Addr()+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// pushRandom pushes a random two-layer image through p and returns it with its blob sizes summed.
func pushRandom(t *testing.T, p *Proxy, repoTag string) (v1.Image, int64) {
	t.Helper()
	img, err := random.Image(64<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(proxyRef(t, p, repoTag), img); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range layers {
		size, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		total += size
	}
	return img, total
}

func firstLayerDigest(t *testing.T, img v1.Image) (v1.Hash, int64) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	return d, size
}

func TestProxyPushPullCounts(t *testing.T) {
	p := requireProxy(t)

	img, layerBytes := pushRandom(t, p, "test/img:v1")
	s := p.Stats()
	if s.BlobBytesUp < layerBytes {
		t.Errorf("push: BlobBytesUp = %d, want >= %d (layer sizes)", s.BlobBytesUp, layerBytes)
	}
	if s.ManifestPuts != 1 {
		t.Errorf("push: ManifestPuts = %d, want 1", s.ManifestPuts)
	}
	if s.BlobUploads != 3 { // two layers and the config
		t.Errorf("push: BlobUploads = %d, want 3", s.BlobUploads)
	}
	if s.BlobBytesDown != 0 || s.BlobGets != 0 {
		t.Errorf("push: downloads counted: %+v", s)
	}
	t.Logf("push: %+v", s)

	p.Reset()
	pulled, err := remote.Image(proxyRef(t, p, "test/img:v1"))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := pulled.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil { // verifies the digest
			t.Fatal(err)
		}
	}
	s = p.Stats()
	if s.BlobBytesDown < layerBytes || s.BlobGets < 2 || s.ManifestGets < 1 {
		t.Errorf("pull: %+v, want BlobBytesDown >= %d, BlobGets >= 2, ManifestGets >= 1", s, layerBytes)
	}
	if s.BlobBytesUp != 0 || s.BlobUploads != 0 || s.ManifestPuts != 0 {
		t.Errorf("pull: uploads counted: %+v", s)
	}
	t.Logf("pull: %+v", s)

	// go-containerregistry HEADs the manifest first and, finding it (200), sends nothing more.
	p.Reset()
	if err := remote.Write(proxyRef(t, p, "test/img:v1"), img); err != nil {
		t.Fatal(err)
	}
	s = p.Stats()
	if s.BlobBytesUp != 0 || s.BlobUploads != 0 || s.ManifestPuts != 0 || s.BlobHeads+s.ManifestHeads < 1 {
		t.Errorf("re-push: %+v, want a HEAD and no uploads", s)
	}
	t.Logf("re-push: %+v", s)

	// Same layers under a new config: the layer HEADs answer 200 and only the config is sent.
	changed, err := mutate.Config(img, v1.Config{Cmd: []string{"changed"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := changed.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	p.Reset()
	if err := remote.Write(proxyRef(t, p, "test/img:v2"), changed); err != nil {
		t.Fatal(err)
	}
	s = p.Stats()
	if s.BlobBytesUp != int64(len(cfg)) || s.BlobUploads != 1 || s.BlobHeads < 2 || s.ManifestPuts != 1 {
		t.Errorf("shared layers: %+v, want only the %d-byte config uploaded", s, len(cfg))
	}
	t.Logf("shared layers: %+v", s)
}

// TestProxyKeepsHost checks the registry's upload Location points back at the proxy, without
// which the bytes of a chunked upload would bypass it and go uncounted.
func TestProxyKeepsHost(t *testing.T) {
	p := requireProxy(t)
	resp, err := http.Post("http://"+p.Addr()+"/v2/test/host/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST uploads: %s", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.IsAbs() && loc.Host != p.Addr() {
		t.Fatalf("Location %s bypasses the proxy at %s", loc, p.Addr())
	}
	if s := p.Stats(); s.BlobUploads != 0 || s.BlobBytesUp != 0 || s.Requests != 1 {
		t.Fatalf("empty POST counted as an upload: %+v", s)
	}
}

func TestProxyMount(t *testing.T) {
	p := requireProxy(t)
	img, _ := pushRandom(t, p, "test/src:v1")
	d, _ := firstLayerDigest(t, img)
	p.Reset()

	u := "http://" + p.Addr() + "/v2/test/dst/blobs/uploads/?mount=" + d.String() + "&from=test/src"
	resp, err := http.Post(u, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mount: %s, want 201", resp.Status)
	}
	req, _ := http.NewRequest(http.MethodHead, "http://"+p.Addr()+"/v2/test/dst/blobs/"+d.String(), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD mounted blob: %s", resp.Status)
	}
	s := p.Stats()
	if s.Mounts != 1 || s.BlobBytesUp != 0 || s.BlobUploads != 0 || s.BlobHeads != 1 || s.Requests != 2 {
		t.Fatalf("mount: %+v, want Mounts 1, BlobHeads 1, Requests 2, no upload bytes", s)
	}

	// A mount from a repository without the blob falls back to an upload session (202), not a mount.
	resp, err = http.Post("http://"+p.Addr()+"/v2/test/dst2/blobs/uploads/?mount="+d.String()+"&from=test/none", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("mount from missing repo: %s, want 202", resp.Status)
	}
	if s := p.Stats(); s.Mounts != 1 {
		t.Fatalf("202 counted as a mount: %+v", s)
	}
}

func TestProxyFaultStatus(t *testing.T) {
	p := requireProxy(t)
	pushRandom(t, p, "test/img:v1")
	manifests := regexp.MustCompile(`/manifests/`)
	p.Inject(Fault{Method: http.MethodGet, Path: manifests, Status: http.StatusServiceUnavailable, Times: 2})
	p.Reset()

	req, _ := http.NewRequest(http.MethodGet, "http://"+p.Addr()+"/v2/test/img/manifests/v1", nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	for i, want := range []int{503, 503, 200} {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET manifest #%d: %s, want %d", i+1, resp.Status, want)
		}
	}
	if s := p.Stats(); s.ManifestGets != 3 {
		t.Fatalf("ManifestGets = %d, want 3 (faulted requests count too)", s.ManifestGets)
	}

	// go-containerregistry retries 503s; two failures fit in its three attempts.
	p.Inject(Fault{Method: http.MethodGet, Path: manifests, Status: http.StatusServiceUnavailable, Times: 2})
	p.Reset()
	if _, err := remote.Get(proxyRef(t, p, "test/img:v1"), fastRetry); err != nil {
		t.Fatalf("remote.Get through two 503s: %v", err)
	}
	if s := p.Stats(); s.ManifestGets != 3 {
		t.Fatalf("ManifestGets = %d, want 3", s.ManifestGets)
	}

	// Method and path must both match.
	p.Inject(Fault{Method: http.MethodPut, Path: manifests, Status: http.StatusServiceUnavailable})
	if _, err := remote.Get(proxyRef(t, p, "test/img:v1"), fastRetry); err != nil {
		t.Fatalf("PUT fault hit a GET: %v", err)
	}
	p.ClearFaults()
}

func TestProxyFaultReset(t *testing.T) {
	p := requireProxy(t)
	p.Inject(Fault{Path: regexp.MustCompile(`^/v2/$`), Reset: true})

	resp, err := http.Get("http://" + p.Addr() + "/v2/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET /v2/ through a reset: %s, want an error", resp.Status)
	}
	t.Logf("reset: %v", err)

	p.ClearFaults()
	resp, err = http.Get("http://" + p.Addr() + "/v2/")
	if err != nil {
		t.Fatalf("after ClearFaults: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after ClearFaults: %s", resp.Status)
	}
	if s := p.Stats(); s.Requests < 2 {
		t.Fatalf("Requests = %d, want >= 2", s.Requests)
	}
}

func TestProxyFaultStall(t *testing.T) {
	p := requireProxy(t)
	p.Inject(Fault{Path: regexp.MustCompile(`^/v2/$`), Stall: 10 * time.Second, Times: 1})

	client := &http.Client{Timeout: 200 * time.Millisecond}
	start := time.Now()
	resp, err := client.Get("http://" + p.Addr() + "/v2/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("stalled GET: %s, want a timeout", resp.Status)
	}
	var nerr net.Error
	if !errors.As(err, &nerr) || !nerr.Timeout() {
		t.Fatalf("stalled GET: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timed out after %v", d)
	}

	// The fault was used up; the next request goes straight through.
	resp, err = client.Get("http://" + p.Addr() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after stall: %s", resp.Status)
	}
}

// TestProxyCloseDuringStall checks Close does not wait out a stalled request.
func TestProxyCloseDuringStall(t *testing.T) {
	p := requireProxy(t)
	p.Inject(Fault{Stall: time.Minute})
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + p.Addr() + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	p.Close()
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("Close took %v", d)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("stalled request still pending after Close")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("proxy still accepting after Close")
	}
}

func TestProxyCorruptBody(t *testing.T) {
	p := requireProxy(t)
	img, _ := pushRandom(t, p, "test/img:v1")
	d, size := firstLayerDigest(t, img)
	blobURL := "http://" + p.Addr() + "/v2/test/img/blobs/" + d.String()
	get := func() []byte {
		t.Helper()
		resp, err := http.Get(blobURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET blob: %s", resp.Status)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sha := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

	p.Inject(Fault{Method: http.MethodGet, Path: regexp.MustCompile(`/blobs/sha256:`), CorruptBody: true, Times: 1})
	p.Reset()
	bad := get()
	if int64(len(bad)) != size {
		t.Fatalf("corrupt body is %d bytes, want %d", len(bad), size)
	}
	if sha(bad) == d.Hex {
		t.Fatal("corrupt body still matches its digest")
	}
	if s := p.Stats(); s.BlobBytesDown != size || s.BlobGets != 1 {
		t.Fatalf("stats %+v, want BlobBytesDown %d, BlobGets 1", s, size)
	}
	if good := get(); sha(good) != d.Hex {
		t.Fatal("body after the fault was used up does not match its digest")
	}

	// go-containerregistry notices the wrong digest when the stream is read to its end.
	p.Inject(Fault{Method: http.MethodGet, Path: regexp.MustCompile(`/blobs/` + regexp.QuoteMeta(d.String())), CorruptBody: true})
	ref, err := name.NewDigest(p.Addr()+"/test/img@"+d.String(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	l, err := remote.Layer(ref, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		t.Fatal("remote.Layer read a corrupt blob without error")
	}
	t.Logf("corrupt layer: %v", err)
}

// TestProxyConcurrent checks counters under parallel traffic (run with -race).
func TestProxyConcurrent(t *testing.T) {
	p := requireProxy(t)
	img, _ := pushRandom(t, p, "test/img:v1")
	d, size := firstLayerDigest(t, img)
	p.Reset()
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			resp, err := http.Get("http://" + p.Addr() + "/v2/test/img/blobs/" + d.String())
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if s := p.Stats(); s.BlobGets != n || s.BlobBytesDown != n*size || s.Requests != n {
		t.Fatalf("stats %+v, want BlobGets %d, BlobBytesDown %d", s, n, n*size)
	}
}
