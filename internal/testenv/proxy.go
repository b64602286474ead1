package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Proxy is a reverse proxy in front of a registry that counts registry traffic and injects faults,
// so end-to-end tests can assert what a client really sent and received and how it copes with
// failures that a healthy local registry never produces.
type Proxy struct {
	addr      string
	target    string
	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once

	mu       sync.Mutex
	stats    ProxyStats
	sessions map[string]bool // upload session IDs already counted in BlobUploads
	posts    int             // POSTs with a body so far; each is its own session
	faults   []*faultRule
}

// ProxyStats counts requests as they arrive (faulted ones included, so retries show), while the
// byte counts are only what was actually forwarded.
type ProxyStats struct {
	BlobBytesDown int64 // response body bytes of 2xx GET /v2/<name>/blobs/<digest>
	BlobBytesUp   int64 // request body bytes sent to /v2/<name>/blobs/uploads/ (POST, PATCH, PUT)

	BlobGets    int
	BlobHeads   int
	BlobUploads int // upload sessions that carried bytes, each counted once however many chunks it took
	Mounts      int // POST …/blobs/uploads/?mount=… answered 201 Created

	ManifestGets  int
	ManifestHeads int
	ManifestPuts  int

	Requests int
}

// Fault applies to requests whose method matches (empty = any) and whose path matches Path (nil =
// any), for the next Times matching requests (Times <= 0: forever). When several faults match, the
// one injected first applies. Stall runs first; then Reset, Status or CorruptBody, in that order.
//
// Go's http.Transport silently retries an idempotent request once when a reused keep-alive
// connection is reset before any response, so a Reset with Times 1 may go unnoticed by such clients.
type Fault struct {
	Method      string
	Path        *regexp.Regexp
	Times       int
	Status      int           // answer with this status and a registry-style error body, without forwarding
	Reset       bool          // close the connection with an RST and no response
	Stall       time.Duration // hold the request first; gives up when the client goes away
	CorruptBody bool          // forward, flipping one response body byte so the length stays but the digest breaks
	CutBody     bool          // forward half the response body, then drop the connection
}

type faultRule struct {
	Fault
	left int // remaining applications; <= 0 with Times <= 0 means forever
}

var (
	uploadPath   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([^/]*)$`)
	blobPath     = regexp.MustCompile(`^/v2/(.+)/blobs/([A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+)$`)
	manifestPath = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
)

// StartProxy listens on a free 127.0.0.1 port and forwards to target ("host:port", plain HTTP).
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		addr:   ln.Addr().String(),
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		// No environment proxy (it would swallow the loopback hop) and no transparent gzip (bytes
		// must pass through exactly as the registry sent them).
		transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		},
		sessions: map[string]bool{},
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serve),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		// Cancelled by Close, so stalled and in-flight requests end at once instead of holding Close.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go p.srv.Serve(ln)
	return p, nil
}

// Addr is host:port, usable as the registry part of a reference.
func (p *Proxy) Addr() string { return p.addr }

// Close stops listening and ends in-flight requests, waiting at most a second for them.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if serr := p.srv.Shutdown(ctx); serr != nil {
			p.srv.Close()
		}
		p.transport.CloseIdleConnections()
	})
	return nil
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Reset zeroes the counters, leaving faults in place, so a test can measure one step at a time.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats = ProxyStats{}
	p.sessions = map[string]bool{}
}

// Inject adds a fault after those already injected.
func (p *Proxy) Inject(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &faultRule{Fault: f, left: f.Times})
}

// ClearFaults removes every fault.
func (p *Proxy) ClearFaults() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
}

// takeFault returns the first fault matching r and uses up one of its applications.
func (p *Proxy) takeFault(r *http.Request) (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		if f.Path != nil && !f.Path.MatchString(r.URL.Path) {
			continue
		}
		if f.Times > 0 {
			f.left--
			if f.left <= 0 {
				p.faults = append(p.faults[:i:i], p.faults[i+1:]...)
			}
		}
		return f.Fault, true
	}
	return Fault{}, false
}

type reqKind int

const (
	kindOther reqKind = iota
	kindBlob
	kindUpload
	kindManifest
)

func classify(path string) (kind reqKind, session string) {
	if m := uploadPath.FindStringSubmatch(path); m != nil {
		return kindUpload, m[2]
	}
	if blobPath.MatchString(path) {
		return kindBlob, ""
	}
	if manifestPath.MatchString(path) {
		return kindManifest, ""
	}
	return kindOther, ""
}

func (p *Proxy) count(kind reqKind, method string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	switch {
	case kind == kindBlob && method == http.MethodGet:
		p.stats.BlobGets++
	case kind == kindBlob && method == http.MethodHead:
		p.stats.BlobHeads++
	case kind == kindManifest && method == http.MethodGet:
		p.stats.ManifestGets++
	case kind == kindManifest && method == http.MethodHead:
		p.stats.ManifestHeads++
	case kind == kindManifest && method == http.MethodPut:
		p.stats.ManifestPuts++
	}
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	kind, session := classify(r.URL.Path)
	p.count(kind, r.Method)

	fault, faulted := p.takeFault(r)
	if faulted && fault.Stall > 0 {
		t := time.NewTimer(fault.Stall)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if faulted && fault.Reset {
		resetConn(w)
		return
	}
	if faulted && fault.Status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(fault.Status)
		fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"testenv proxy: injected fault"}]}`+"\n", errorCode(fault.Status))
		return
	}

	if kind == kindUpload && r.Body != nil && r.Body != http.NoBody {
		// A POST carries no session ID yet, so each POST with a body is its own session.
		if session == "" || r.Method == http.MethodPost {
			p.mu.Lock()
			p.posts++
			session = fmt.Sprintf("post %d", p.posts)
			p.mu.Unlock()
		}
		r.Body = &countReader{rc: r.Body, add: func(n int) { p.addUp(session, n) }}
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Only the URL changes: the registry builds upload Location headers from the Host
			// header, and those must point back at the proxy so the uploads pass through it.
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = p.target
		},
		Transport: p.transport,
		ErrorLog:  log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			w.WriteHeader(http.StatusBadGateway)
		},
		ModifyResponse: func(resp *http.Response) error {
			ok := resp.StatusCode >= 200 && resp.StatusCode < 300
			if kind == kindUpload && r.Method == http.MethodPost && r.URL.Query().Has("mount") &&
				resp.StatusCode == http.StatusCreated {
				p.mu.Lock()
				p.stats.Mounts++
				p.mu.Unlock()
			}
			if kind == kindBlob && r.Method == http.MethodGet && ok {
				resp.Body = &countReader{rc: resp.Body, add: p.addDown}
			}
			if faulted && fault.CorruptBody {
				// The last byte when the length is known, so headers (gzip, tar, JSON) stay intact
				// as long as possible and the damage shows as a wrong digest rather than a parse error.
				at := resp.ContentLength - 1
				if at < 0 {
					at = 0
				}
				resp.Body = &corruptReader{rc: resp.Body, at: at}
			}
			if faulted && fault.CutBody {
				resp.Body = &cutReader{rc: resp.Body, left: resp.ContentLength / 2}
			}
			return nil
		},
	}
	rp.ServeHTTP(w, r)
}

// errorCode picks the distribution-spec code a registry would send with status, since clients
// decide whether to retry from it as well as from the status.
func errorCode(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "UNAUTHORIZED"
	case status == http.StatusForbidden:
		return "DENIED"
	case status == http.StatusNotFound:
		return "NAME_UNKNOWN"
	case status == http.StatusTooManyRequests:
		return "TOOMANYREQUESTS"
	case status >= 500:
		return "UNAVAILABLE"
	}
	return "UNKNOWN"
}

func (p *Proxy) addUp(session string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.BlobBytesUp += int64(n)
	if !p.sessions[session] {
		p.sessions[session] = true
		p.stats.BlobUploads++
	}
}

func (p *Proxy) addDown(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.BlobBytesDown += int64(n)
}

// resetConn closes the client's connection with linger 0, so the kernel sends an RST rather than
// a FIN and the client sees a reset instead of a clean close.
func resetConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// countReader reports each chunk read, so bodies stream through while being counted.
type countReader struct {
	rc  io.ReadCloser
	add func(int)
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.rc.Read(b)
	if n > 0 {
		c.add(n)
	}
	return n, err
}

func (c *countReader) Close() error { return c.rc.Close() }

// corruptReader inverts the byte at offset at as it streams past.
type corruptReader struct {
	rc  io.ReadCloser
	off int64
	at  int64
}

func (c *corruptReader) Read(b []byte) (int, error) {
	n, err := c.rc.Read(b)
	if c.at >= c.off && c.at < c.off+int64(n) {
		b[c.at-c.off] ^= 0xff
	}
	c.off += int64(n)
	return n, err
}

func (c *corruptReader) Close() error { return c.rc.Close() }

// cutReader fails after left bytes, which makes the proxy abort the response mid-body.
type cutReader struct {
	rc   io.ReadCloser
	left int64
}

func (c *cutReader) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("testenv proxy: body cut")
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.rc.Read(b)
	c.left -= int64(n)
	return n, err
}

func (c *cutReader) Close() error { return c.rc.Close() }
