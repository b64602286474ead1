package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/testenv"
)

var (
	reg        *testenv.Registry
	busyboxRef string
	setupErr   error
)

func TestMain(m *testing.M) {
	// DOCKER_CONFIG points at an empty dir so a developer's credentials never reach the test registry.
	cfgDir, err := os.MkdirTemp("", "strata-docker-config-")
	if err == nil {
		os.Setenv("DOCKER_CONFIG", cfgDir)
	}
	reg, setupErr = testenv.StartRegistry()
	if setupErr == nil {
		busyboxRef, setupErr = testenv.PushBusybox(reg)
	}
	if setupErr == nil {
		_, setupErr = testenv.PushBusyboxAs(reg, "library/busybox:latest")
	}
	code := m.Run()
	if reg != nil {
		reg.Close()
	}
	os.RemoveAll(cfgDir)
	os.Exit(code)
}

func requireRegistry(t *testing.T) {
	t.Helper()
	if setupErr != nil {
		t.Skipf("no test registry: %v", setupErr)
	}
}

func newStore(t *testing.T) *testenv.DirStore {
	t.Helper()
	s, err := testenv.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func skopeoDigest(t *testing.T, ref string) string {
	t.Helper()
	out, err := testenv.SkopeoOutput("inspect", "--tls-verify=false", "docker://"+ref)
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Digest string }
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info.Digest
}

func amd64() Options { return Options{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}} }

func TestPullPushRoundTrip(t *testing.T) {
	requireRegistry(t)
	ctx := context.Background()
	c := New(amd64())
	bs := newStore(t)

	var mu sync.Mutex
	last := map[digest.Digest]int64{}
	img, err := c.Pull(ctx, busyboxRef, bs, func(d ocispec.Descriptor, done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if total != d.Size || done > total {
			t.Errorf("progress %s: %d/%d, size %d", d.Digest, done, total, d.Size)
		}
		last[d.Digest] = done
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := skopeoDigest(t, busyboxRef); img.Manifest.Digest.String() != want {
		t.Fatalf("pulled %s, skopeo says %s", img.Manifest.Digest, want)
	}
	for _, b := range img.Blobs() {
		if !bs.Has(b.Digest) {
			t.Fatalf("blob %s missing from store", b.Digest)
		}
		if last[b.Digest] != b.Size {
			t.Fatalf("progress for %s ended at %d of %d", b.Digest, last[b.Digest], b.Size)
		}
	}
	if d, err := c.Resolve(ctx, busyboxRef); err != nil || d != img.Manifest.Digest {
		t.Fatalf("Resolve = %s, %v; want %s", d, err, img.Manifest.Digest)
	}

	refs := []string{reg.Addr() + "/copy/busybox:v1", reg.Addr() + "/copy/busybox:v2"}
	if err := c.Push(ctx, img, bs, refs, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if got := skopeoDigest(t, r); got != img.Manifest.Digest.String() {
			t.Fatalf("%s has digest %s, pushed %s", r, got, img.Manifest.Digest)
		}
	}
	// The copy must be complete, not just a manifest: skopeo reads every blob back.
	if err := testenv.Skopeo("copy", "--quiet", "--src-tls-verify=false", "docker://"+refs[0], "oci:"+t.TempDir()+":x"); err != nil {
		t.Fatal(err)
	}
}

// countingProxy forwards to the test registry and counts GETs per blob digest.
func countingProxy(t *testing.T) (addr string, blobGets func() map[string]int) {
	t.Helper()
	target, _ := url.Parse("http://" + reg.Addr())
	var mu sync.Mutex
	counts := map[string]int{}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
			mu.Lock()
			counts[r.URL.Path[i+len("/blobs/"):]]++
			mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range counts {
			out[k] = v
		}
		return out
	}
}

func TestPullFetchesEachBlobOnce(t *testing.T) {
	requireRegistry(t)
	ctx := context.Background()
	c := New(amd64())
	src := newStore(t)
	base, err := c.Pull(ctx, busyboxRef, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	// An image listing the same layer twice, as `COPY` of identical content in two steps produces.
	img := duplicateLayer(t, base, src)
	ref := reg.Addr() + "/dup:latest"
	if err := c.Push(ctx, img, src, []string{ref}, nil, nil); err != nil {
		t.Fatal(err)
	}

	proxy, gets := countingProxy(t)
	bs := newStore(t)
	pulled, err := c.Pull(ctx, proxy+"/dup:latest", bs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Manifest.Digest != img.Manifest.Digest || len(pulled.Layers) != 2 {
		t.Fatalf("pulled %s with %d layers, pushed %s", pulled.Manifest.Digest, len(pulled.Layers), img.Manifest.Digest)
	}
	got := gets()
	for _, b := range img.Blobs() {
		if got[b.Digest.String()] != 1 {
			t.Fatalf("blob %s fetched %d times; all fetches: %v", b.Digest, got[b.Digest.String()], got)
		}
	}
	if _, err := c.Pull(ctx, proxy+"/dup:latest", bs, nil); err != nil {
		t.Fatal(err)
	}
	if again := gets(); fmt.Sprint(again) != fmt.Sprint(got) {
		t.Fatalf("second pull fetched blobs already in the store: %v then %v", got, again)
	}
}

func duplicateLayer(t *testing.T, base *image.Image, bs *testenv.DirStore) *image.Image {
	t.Helper()
	var cfg ocispec.Image
	if err := json.Unmarshal(base.ConfigBytes, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, cfg.RootFS.DiffIDs...)
	cfg.History = append(cfg.History, cfg.History...)
	cfgBytes, _ := json.Marshal(cfg)
	cfgDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfgBytes), Size: int64(len(cfgBytes))}
	if err := bs.Ingest(cfgDesc.Digest, strings.NewReader(string(cfgBytes))); err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    append(append([]ocispec.Descriptor{}, base.Layers...), base.Layers...),
	}
	mBytes, _ := json.Marshal(m)
	img, err := image.Parse(mBytes, cfgBytes)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

type rawIndex struct{ b []byte }

func (r rawIndex) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }

func TestResolveIndexAndMissingPlatform(t *testing.T) {
	requireRegistry(t)
	ctx := context.Background()
	c := New(amd64())
	want, err := c.Resolve(ctx, busyboxRef)
	if err != nil {
		t.Fatal(err)
	}
	mBytes, err := testenv.SkopeoOutput("inspect", "--raw", "--tls-verify=false", "docker://"+busyboxRef)
	if err != nil {
		t.Fatal(err)
	}
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{
			{MediaType: ocispec.MediaTypeImageManifest, Digest: want, Size: int64(len(mBytes)),
				Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}},
			// An attestation entry, as buildx adds; it must neither match nor be offered.
			{MediaType: ocispec.MediaTypeImageManifest, Digest: want, Size: int64(len(mBytes)),
				Platform: &ocispec.Platform{OS: "unknown", Architecture: "unknown"}},
		},
	}
	b, _ := json.Marshal(idx)
	multi, err := name.ParseReference(reg.Addr()+"/busybox:multi", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(multi, rawIndex{b}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Resolve(ctx, multi.String())
	if err != nil || got != want {
		t.Fatalf("Resolve(index) = %s, %v; want %s", got, err, want)
	}
	arm := New(Options{Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}})
	_, err = arm.Resolve(ctx, multi.String())
	if !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "linux/arm64") ||
		!strings.Contains(err.Error(), "the image has linux/amd64") || strings.Contains(err.Error(), "unknown/unknown") {
		t.Fatalf("arm64 resolve: %v", err)
	}
	if _, err := arm.Pull(ctx, multi.String(), newStore(t), nil); !errors.Is(err, ErrNoPlatform) {
		t.Fatalf("arm64 pull: %v", err)
	}
}

func TestResolveMissingTag(t *testing.T) {
	requireRegistry(t)
	c := New(amd64())
	for _, ref := range []string{reg.Addr() + "/busybox:nope", reg.Addr() + "/nosuchrepo:latest"} {
		_, err := c.Resolve(context.Background(), ref)
		if !errors.Is(err, ErrNotFound) || !strings.HasPrefix(err.Error(), "resolve "+ref+": image not found") {
			t.Fatalf("Resolve(%s): %v", ref, err)
		}
	}
}

func TestUnreachable(t *testing.T) {
	c := New(amd64())
	start := time.Now()
	_, err := c.Pull(context.Background(), "127.0.0.1:1/xy:1", newStore(t), nil)
	if !errors.Is(err, ErrUnreachable) || !strings.HasPrefix(err.Error(), "pull 127.0.0.1:1/xy:1: registry unreachable: ") {
		t.Fatalf("Pull: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("refused connection took %s to report", d)
	}
	// go-containerregistry cannot address one-character repositories; say so instead of "could not parse".
	_, err = c.Pull(context.Background(), "127.0.0.1:1/x:1", newStore(t), nil)
	if err == nil || !strings.Contains(err.Error(), "repository must be between 2 and 255 characters") {
		t.Fatalf("Pull of one-character repository: %v", err)
	}
}

func TestUnauthorized(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	ref := srv.Listener.Addr().String() + "/private:1"
	_, err := New(amd64()).Pull(context.Background(), ref, newStore(t), nil)
	host := srv.Listener.Addr().String()
	if !errors.Is(err, ErrUnauthorized) ||
		!strings.HasPrefix(err.Error(), "pull "+ref+": unauthorized: "+host+" refused the credentials strata found for it (or it needs some and there are none): run `docker login "+host+"`") {
		t.Fatalf("Pull: %v", err)
	}
	// One re-authentication, then final: two pings and two manifest requests at most.
	if n := hits.Load(); n > 4 {
		t.Errorf("%d requests for a refused login, want at most 4", n)
	}
}

// TestPlainHTTPOnlyWhenAllowed points every host name at one cleartext server and checks that it
// hears from the client only for hosts marked insecure, including a private address that
// go-containerregistry would otherwise try over http.
func TestPlainHTTPOnlyWhenAllowed(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}
	for _, host := range []string{"registry.example.com:5000", "192.168.77.1:5000", "10.1.2.3"} {
		c := New(amd64())
		c.dial = dial
		hits.Store(0)
		_, err := c.Resolve(context.Background(), host+"/xy:1")
		if err == nil || hits.Load() != 0 {
			t.Fatalf("%s (not insecure): err %v, %d plain http requests", host, err, hits.Load())
		}
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("%s: want unreachable (TLS against a cleartext server), got %v", host, err)
		}

		c = New(Options{Insecure: []string{host}, Platform: amd64().Platform})
		c.dial = dial
		_, err = c.Resolve(context.Background(), host+"/xy:1")
		if hits.Load() == 0 {
			t.Fatalf("%s (insecure): server never contacted over http: %v", host, err)
		}
	}
}

func TestMirrors(t *testing.T) {
	requireRegistry(t)
	ctx := context.Background()
	proxy, gets := countingProxy(t)
	c := New(Options{
		Mirrors:  []string{"127.0.0.1:1", "http://" + proxy + "/"},
		Platform: amd64().Platform,
	})
	// docker.io itself is unreachable in this sandbox, so succeeding proves the mirror served it.
	img, err := c.Pull(ctx, "busybox", newStore(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := skopeoDigest(t, reg.Addr()+"/library/busybox:latest"); img.Manifest.Digest.String() != want {
		t.Fatalf("pulled %s, mirror has %s", img.Manifest.Digest, want)
	}
	if len(gets()) == 0 {
		t.Fatal("blobs did not come from the mirror")
	}
	// Mirrors apply to docker.io only.
	c2 := New(Options{Mirrors: []string{proxy}, Platform: amd64().Platform})
	if _, err := c2.Resolve(ctx, "127.0.0.1:1/busybox:latest"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("non-docker.io ref went to the mirror: %v", err)
	}
}

func TestPullDockerSchema2(t *testing.T) {
	requireRegistry(t)
	ref := reg.Addr() + "/busybox:v2s2"
	if err := testenv.Skopeo("copy", "--quiet", "--format", "v2s2", "--src-tls-verify=false", "--dest-tls-verify=false",
		"docker://"+busyboxRef, "docker://"+ref); err != nil {
		t.Fatal(err)
	}
	c := New(amd64())
	bs := newStore(t)
	img, err := c.Pull(context.Background(), ref, bs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Manifest.MediaType != image.MediaTypeDockerManifest || img.Layers[0].MediaType != image.MediaTypeDockerLayerGzip {
		t.Fatalf("media types %s / %s", img.Manifest.MediaType, img.Layers[0].MediaType)
	}
	if want := skopeoDigest(t, ref); img.Manifest.Digest.String() != want {
		t.Fatalf("pulled %s, skopeo says %s", img.Manifest.Digest, want)
	}
	dst := reg.Addr() + "/copy/v2s2:latest"
	if err := c.Push(context.Background(), img, bs, []string{dst}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := skopeoDigest(t, dst); got != img.Manifest.Digest.String() {
		t.Fatalf("pushed %s, registry has %s", img.Manifest.Digest, got)
	}
}
