package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

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

func (c *Client) roundTripper() http.RoundTripper {
	c.transportOnce.Do(func() {
		base := remote.DefaultTransport.(*http.Transport).Clone()
		if c.dial != nil {
			base.DialContext = c.dial
		}
		c.transport = &schemeGuard{base: base, allowHTTP: c.allowHTTP}
	})
	return c.transport
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
