package registry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/testenv"
)

// fast is amd64() with short timeouts and retry delays, so fault tests take milliseconds.
func fast() Options {
	o := amd64()
	o.HeaderTimeout, o.IdleTimeout, o.RetryDelay = 500*time.Millisecond, 500*time.Millisecond, 10*time.Millisecond
	return o
}

func faultProxy(t *testing.T) *testenv.Proxy {
	t.Helper()
	requireRegistry(t)
	p, err := testenv.StartProxy(reg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestRetry5xx(t *testing.T) {
	p := faultProxy(t)
	ref := p.Addr() + strings.TrimPrefix(busyboxRef, reg.Addr())
	manifests := regexp.MustCompile(`/manifests/`)

	p.Inject(testenv.Fault{Method: "GET", Path: manifests, Times: 2, Status: 503})
	if _, err := New(fast()).Resolve(context.Background(), ref); err != nil {
		t.Fatalf("two 503s were not retried away: %v", err)
	}

	p.ClearFaults()
	p.Reset()
	p.Inject(testenv.Fault{Method: "GET", Path: manifests, Status: 503})
	_, err := New(fast()).Resolve(context.Background(), ref)
	var serr *StatusError
	if !errors.As(err, &serr) || serr.StatusCode != 503 ||
		err.Error() != "resolve "+ref+": registry returned 503 Service Unavailable: testenv proxy: injected fault (after 3 tries)" {
		t.Fatalf("Resolve: %v", err)
	}
	if n := p.Stats().ManifestGets; n != 3 {
		t.Fatalf("%d manifest GETs, want 3 (no retries inside go-containerregistry's)", n)
	}

	// Not found and unauthorized are final.
	p.ClearFaults()
	p.Reset()
	p.Inject(testenv.Fault{Method: "GET", Path: manifests, Status: 404})
	if _, err := New(fast()).Resolve(context.Background(), ref); !errors.Is(err, ErrNotFound) || p.Stats().ManifestGets != 1 {
		t.Fatalf("404: %v after %d GETs", err, p.Stats().ManifestGets)
	}
}

func TestStalledHeaders(t *testing.T) {
	p := faultProxy(t)
	ref := p.Addr() + strings.TrimPrefix(busyboxRef, reg.Addr())
	p.Inject(testenv.Fault{Method: "GET", Path: regexp.MustCompile(`/manifests/`), Stall: time.Minute})
	start := time.Now()
	_, err := New(fast()).Resolve(context.Background(), ref)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no response to GET "+p.Addr()+"/v2/") ||
		!strings.HasSuffix(err.Error(), "within 500ms (after 3 tries)") {
		t.Fatalf("Resolve: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s", d)
	}
}

// blobServer serves one blob's length and the first half of its bytes, then behaves as told.
func blobServer(t *testing.T, body []byte, gets *atomic.Int32, rest func(w http.ResponseWriter, r *http.Request)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			w.WriteHeader(http.StatusOK) // the /v2/ ping
			return
		}
		gets.Add(1)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		rest(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestStalledBody(t *testing.T) {
	body := []byte(strings.Repeat("strata", 10000))
	var gets atomic.Int32
	addr := blobServer(t, body, &gets, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	d := ocispec.Descriptor{Digest: digest.FromBytes(body), Size: int64(len(body))}
	bs := newStore(t)
	start := time.Now()
	err := New(fast()).FetchBlob(context.Background(), addr+"/stall", d, bs, nil)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "no data from GET "+addr+"/v2/stall/blobs/"+d.Digest.String()+" for 500ms") ||
		!strings.HasSuffix(err.Error(), "(after 3 tries)") {
		t.Fatalf("FetchBlob: %v", err)
	}
	t.Log(err)
	if gets.Load() != 3 || bs.Has(d.Digest) {
		t.Fatalf("%d GETs, in store: %v", gets.Load(), bs.Has(d.Digest))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestCorruptBlobNeverStored(t *testing.T) {
	body := []byte(strings.Repeat("strata", 10000))
	var gets atomic.Int32
	addr := blobServer(t, body, &gets, func(w http.ResponseWriter, r *http.Request) {
		bad := append([]byte{}, body[len(body)/2:]...)
		bad[len(bad)-1] ^= 0xff
		w.Write(bad)
	})
	d := ocispec.Descriptor{Digest: digest.FromBytes(body), Size: int64(len(body))}
	bs := newStore(t)
	err := New(fast()).FetchBlob(context.Background(), addr+"/corrupt", d, bs, nil)
	var derr *DigestError
	if !errors.As(err, &derr) || derr.Want != d.Digest ||
		!regexp.MustCompile(`^fetch from \S+/corrupt: blob `+d.Digest.String()+`: content does not match its digest \(registry sent sha256:[0-9a-f]{64}\)$`).MatchString(err.Error()) {
		t.Fatalf("FetchBlob: %v", err)
	}
	t.Log(err)
	if gets.Load() != 1 || bs.Has(d.Digest) {
		t.Fatalf("%d GETs (a mismatch is not retried), in store: %v", gets.Load(), bs.Has(d.Digest))
	}
}

func TestTimeoutFromEnv(t *testing.T) {
	t.Setenv(EnvTimeout, "1500ms")
	if l := New(amd64()).limits; l.header != 1500*time.Millisecond || l.idle != 1500*time.Millisecond || l.tries != 3 || l.delay != 500*time.Millisecond {
		t.Fatalf("limits %+v", l)
	}
	o := amd64()
	o.IdleTimeout = time.Minute
	if l := New(o).limits; l.header != 1500*time.Millisecond || l.idle != time.Minute {
		t.Fatalf("options do not win over the environment: %+v", l)
	}
	t.Setenv(EnvTimeout, "")
	if l := New(amd64()).limits; l.header != DefaultHeaderTimeout || l.idle != DefaultIdleTimeout {
		t.Fatalf("defaults %+v", l)
	}
	t.Setenv(EnvTimeout, "soon")
	_, err := New(amd64()).Resolve(context.Background(), "127.0.0.1:1/xy:1")
	if err == nil || !strings.Contains(err.Error(), `STRATA_REGISTRY_TIMEOUT="soon": want a positive duration`) {
		t.Fatalf("Resolve with a bad %s: %v", EnvTimeout, err)
	}
}

func TestRefusedIsNotRetried(t *testing.T) {
	o := amd64()
	o.RetryDelay = 5 * time.Second // a retry would show in the time taken
	start := time.Now()
	_, err := New(o).Resolve(context.Background(), "127.0.0.1:1/xy:1")
	if !errors.Is(err, ErrUnreachable) || strings.Contains(err.Error(), "tries") {
		t.Fatalf("Resolve: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a refused connection was retried: %s", d)
	}
}
