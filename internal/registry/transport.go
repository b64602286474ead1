package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// errPlainHTTP marks a refused cleartext request. go-containerregistry on its own falls back to
// http for RFC 1918 addresses too, and follows redirects to any scheme, so the rule is enforced on
// every request rather than only when choosing the reference's scheme.
var errPlainHTTP = errors.New("plain http refused: only loopback registries and insecure registries may use http")

// parse reads ref (short names become docker.io/library/…) and marks it insecure when its registry
// may use plain HTTP.
func (c *Client) parse(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		// go-containerregistry rejects one-character repositories (…/x:1) that Docker accepts, and
		// its ParseReference error hides why; NewTag's message names the offending part.
		if _, terr := name.NewTag(ref); terr != nil {
			err = terr
		}
		return nil, fmt.Errorf("invalid reference: %w", err)
	}
	if c.allowHTTP(r.Context().RegistryStr()) {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, fmt.Errorf("invalid reference: %w", err)
		}
	}
	return r, nil
}

// mirrorsFor returns r rewritten onto each mirror, in order, when r is a docker.io image.
func (c *Client) mirrorsFor(r name.Reference) []name.Reference {
	if r.Context().RegistryStr() != name.DefaultRegistry {
		return nil
	}
	var out []name.Reference
	for _, m := range c.opts.Mirrors {
		m = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(m, "https://"), "http://"), "/")
		if m == "" {
			continue
		}
		s := m + "/" + r.Context().RepositoryStr()
		if d, ok := r.(name.Digest); ok {
			s += "@" + d.DigestStr()
		} else {
			s += ":" + r.Identifier()
		}
		mr, err := c.parse(s)
		if err != nil {
			continue // a malformed mirror must not stop pulls that docker.io itself can serve
		}
		out = append(out, mr)
	}
	return out
}

// allowHTTP reports whether host (host or host:port, as in a reference or URL) may be spoken to in
// cleartext: loopback always, otherwise only when listed in Options.Insecure by host or host:port.
func (c *Client) allowHTTP(host string) bool {
	hostname := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostname = h
	}
	hostname = strings.Trim(hostname, "[]")
	if hostname == "localhost" {
		return true
	}
	if ip := net.ParseIP(hostname); ip != nil && ip.IsLoopback() {
		return true
	}
	return slices.Contains(c.opts.Insecure, host) || slices.Contains(c.opts.Insecure, hostname)
}

// roundTripper is the client's one transport: go-containerregistry's defaults with bounded waits.
// Dialing and the TLS handshake are bounded as usual; ResponseHeaderTimeout bounds the wait for an
// answer once a request is sent; every response body fails when no byte arrives for the idle
// timeout (idleGuard), and every connection fails a write that cannot progress for as long (a
// registry that stopped reading an upload). So a stalled registry ends in an error, never a hang.
func (c *Client) roundTripper() http.RoundTripper {
	c.transportOnce.Do(func() {
		base := remote.DefaultTransport.(*http.Transport).Clone()
		dial := (&net.Dialer{Timeout: min(dialTimeout, c.limits.header), KeepAlive: 30 * time.Second}).DialContext
		if c.dial != nil {
			dial = c.dial
		}
		idle := c.limits.idle
		base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &writeDeadlineConn{Conn: conn, idle: idle}, nil
		}
		base.TLSHandshakeTimeout = min(tlsHandshakeTimeout, c.limits.header)
		base.ResponseHeaderTimeout = c.limits.header
		c.transport = &schemeGuard{
			base:      &idleGuard{base: base, header: c.limits.header, idle: idle},
			allowHTTP: c.allowHTTP,
		}
	})
	return c.transport
}

// idleGuard names the header timeout after the request it concerns and watches response bodies:
// a body that delivers no byte for idle fails with a stallError instead of blocking forever.
type idleGuard struct {
	base         http.RoundTripper
	header, idle time.Duration
}

func (g *idleGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	resp, err := g.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel(nil)
		var nerr net.Error
		// net/http's own error says only "timeout awaiting response headers".
		if errors.As(err, &nerr) && nerr.Timeout() && strings.Contains(err.Error(), "awaiting response headers") {
			return nil, &stallError{msg: fmt.Sprintf("no response to %s within %s", requestName(req.Method, req.URL), g.header)}
		}
		return nil, err
	}
	resp.Body = &idleBody{rc: resp.Body, idle: g.idle, cancel: cancel, what: requestName(req.Method, req.URL)}
	return resp, nil
}

// idleBody fails a Read that waits longer than idle for data, cancelling the request so the
// blocked read returns. Time between reads (the consumer busy writing) does not count.
type idleBody struct {
	rc      io.ReadCloser
	idle    time.Duration
	cancel  context.CancelCauseFunc
	what    string
	timer   *time.Timer
	stalled atomic.Bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.stalled.Load() {
		return 0, b.stallErr()
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(b.idle, func() {
			b.stalled.Store(true)
			b.cancel(nil)
		})
	} else {
		b.timer.Reset(b.idle)
	}
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF && b.stalled.Load() {
		return n, b.stallErr()
	}
	return n, err
}

func (b *idleBody) stallErr() error {
	return &stallError{msg: fmt.Sprintf("no data from %s for %s", b.what, b.idle)}
}

func (b *idleBody) Close() error {
	if b.timer != nil {
		b.timer.Stop()
	}
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// writeDeadlineConn gives every write idle to complete, so an upload to a registry that stopped
// reading fails instead of blocking once the socket buffers are full. Reads are bounded by
// ResponseHeaderTimeout and idleBody instead, since an idle keep-alive connection must not expire.
type writeDeadlineConn struct {
	net.Conn
	idle time.Duration
}

func (c *writeDeadlineConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Write(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, &stallError{msg: fmt.Sprintf("%s accepted no data for %s", c.RemoteAddr(), c.idle)}
	}
	return n, err
}

type schemeGuard struct {
	base      http.RoundTripper
	allowHTTP func(host string) bool
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !g.allowHTTP(req.URL.Host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), errPlainHTTP)
	}
	return g.base.RoundTrip(req)
}
