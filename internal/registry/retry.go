package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
)

// EnvTimeout names the environment variable that sets both registry timeouts (Options.HeaderTimeout
// and Options.IdleTimeout) when the options leave them zero: a Go duration such as "10s" or "2m".
// Tests use a short one so a stalled registry fails fast; a slow link may need a longer one.
const EnvTimeout = "STRATA_REGISTRY_TIMEOUT"

// Defaults for the Options a caller leaves zero.
const (
	// DefaultHeaderTimeout is how long a registry may take to start answering a request (after
	// the request, body included, has been sent).
	DefaultHeaderTimeout = 30 * time.Second
	// DefaultIdleTimeout is how long a response body (or an upload) may go without moving a byte.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultTries is how many times an operation is attempted when it fails in a way that may pass.
	DefaultTries = 3
	// DefaultRetryDelay is the wait before the second try; it doubles for each further try, with
	// up to 10% random jitter so parallel uploads do not retry in lockstep.
	DefaultRetryDelay = 500 * time.Millisecond

	dialTimeout         = 30 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
)

// Errors for failures that have no better sentinel.
var (
	// ErrTimeout is a registry that accepted a connection and then stopped answering.
	ErrTimeout = errors.New("registry timed out")
)

// limits is the resolved timing configuration of a Client.
type limits struct {
	header, idle time.Duration
	tries        int
	delay        time.Duration
	err          error // a malformed STRATA_REGISTRY_TIMEOUT, reported by every operation
}

func resolveLimits(o Options) limits {
	l := limits{header: o.HeaderTimeout, idle: o.IdleTimeout, tries: o.Tries, delay: o.RetryDelay}
	if v := os.Getenv(EnvTimeout); v != "" && (l.header == 0 || l.idle == 0) {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			l.err = fmt.Errorf("%s=%q: want a positive duration such as 30s or 2m", EnvTimeout, v)
		} else {
			if l.header == 0 {
				l.header = d
			}
			if l.idle == 0 {
				l.idle = d
			}
		}
	}
	if l.header <= 0 {
		l.header = DefaultHeaderTimeout
	}
	if l.idle <= 0 {
		l.idle = DefaultIdleTimeout
	}
	if l.tries <= 0 {
		l.tries = DefaultTries
	}
	if l.delay <= 0 {
		l.delay = DefaultRetryDelay
	}
	return l
}

// retry runs op until it succeeds, fails in a way another try cannot fix, or has been tried
// c.limits.tries times, waiting between tries with exponential backoff. op returns classified
// errors. go-containerregistry's own retries are off (see remoteOptions): retrying here covers a
// whole operation, including reading the body, and knows how many tries were made.
func (c *Client) retry(ctx context.Context, op func() error) error {
	if c.limits.err != nil {
		return c.limits.err
	}
	delay := c.limits.delay
	reauthed := false
	for try := 1; ; try++ {
		err := op()
		if err != nil && ctx.Err() == nil && errors.Is(err, ErrUnauthorized) && !reauthed {
			// A token that expired mid-build, or a registry that rotated a session, answers 401
			// to credentials that were fine a moment ago: the next try authenticates afresh
			// (each operation negotiates its own token). Once only, so wrong credentials cost
			// one more request, never a storm.
			reauthed = true
			try--
			continue
		}
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return err
		}
		if try >= c.limits.tries {
			if try == 1 {
				return err
			}
			return &triesError{err: err, tries: try}
		}
		t := time.NewTimer(delay + rand.N(delay/10+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		delay *= 2
	}
}

// triesError is the last error of an operation that was retried until the tries ran out.
type triesError struct {
	err   error
	tries int
}

func (e *triesError) Error() string { return fmt.Sprintf("%v (after %d tries)", e.err, e.tries) }
func (e *triesError) Unwrap() error { return e.err }

// retryable reports whether another try may succeed: the registry said so (408, 429, 5xx other
// than 501 and 505), the connection broke (reset, closed, cut short) or the registry stalled.
// Refused connections, name and certificate errors, authorization, missing content and digest
// mismatches are final.
func retryable(err error) bool {
	if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoPlatform) ||
		errors.Is(err, errPlainHTTP) || errors.Is(err, context.Canceled) {
		return false
	}
	var derr *DigestError
	if errors.As(err, &derr) {
		return false
	}
	var serr *StatusError
	if errors.As(err, &serr) {
		s := serr.StatusCode
		return s == http.StatusRequestTimeout || s == http.StatusTooManyRequests ||
			s >= 500 && s != http.StatusNotImplemented && s != http.StatusHTTPVersionNotSupported
	}
	var stall *stallError
	if errors.As(err, &stall) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}

// StatusError is an HTTP status a registry answered with that strata has no more specific
// error for. Its message is one line: the status and the registry's own message, if short.
type StatusError struct {
	StatusCode int
	Message    string // the registry's error message(s), on one line; may be empty
	err        *transport.Error
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("registry returned %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *StatusError) Unwrap() error { return e.err }

func newStatusError(terr *transport.Error) *StatusError {
	var msgs []string
	for _, d := range terr.Errors {
		m := d.Message
		if m == "" {
			m = string(d.Code)
		}
		if m != "" {
			msgs = append(msgs, m)
		}
	}
	return &StatusError{StatusCode: terr.StatusCode, Message: oneLine(strings.Join(msgs, "; ")), err: terr}
}

// oneLine collapses whitespace so a registry's message cannot break the line it is printed in,
// and cuts it short.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// DigestError is a blob whose bytes do not hash to the digest they were asked for by. Such bytes
// never become visible in the store.
type DigestError struct {
	Want digest.Digest
	Got  string // what the bytes hashed to, when known
}

// Error leaves the wanted digest out: callers name the blob ("blob sha256:…: ") already.
func (e *DigestError) Error() string {
	if e.Got != "" {
		return fmt.Sprintf("content does not match its digest (registry sent %s)", e.Got)
	}
	return "content does not match its digest"
}

// gotDigest picks the digest out of go-containerregistry's verification error.
var gotDigest = regexp.MustCompile(`got "([a-z0-9]+:[a-f0-9]+)"`)

// asDigestError recognizes go-containerregistry's verification failure (a plain formatted error)
// as a DigestError.
func asDigestError(err error, want digest.Digest) error {
	var derr *DigestError
	if err == nil || errors.As(err, &derr) || !strings.Contains(err.Error(), "error verifying") {
		return err
	}
	e := &DigestError{Want: want}
	if m := gotDigest.FindStringSubmatch(err.Error()); m != nil {
		e.Got = m[1]
	}
	return e
}

// stallError is a registry that stopped answering: no response headers, no next byte of a body,
// or an upload it stopped reading, for longer than the timeout. It is a net.Error that timed out.
type stallError struct {
	msg string
}

func (e *stallError) Error() string   { return e.msg }
func (e *stallError) Timeout() bool   { return true }
func (e *stallError) Temporary() bool { return true }

// requestName is "GET host/path" for messages: no scheme, no query (upload URLs carry long
// opaque state there, and some registries signed tokens).
func requestName(method string, u *url.URL) string {
	if u == nil {
		return method
	}
	return method + " " + u.Host + u.EscapedPath()
}

// netError is a network failure said in one line: the request, when known, as "POST host/path"
// (no query: upload URLs carry long opaque state there) and the cause without socket addresses.
// It unwraps to the original error, so errors.Is still finds the errno.
type netError struct {
	msg string
	err error
}

func (e *netError) Error() string { return e.msg }
func (e *netError) Unwrap() error { return e.err }

// describeNet words a network error for users. Dial failures keep Go's message, which names the
// address that could not be reached.
func describeNet(err error) error {
	var oerr *net.OpError
	if errors.As(err, &oerr) && oerr.Op == "dial" {
		return withoutQuery(err)
	}
	var cause string
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		cause = "connection reset by peer"
	case errors.Is(err, syscall.EPIPE):
		cause = "connection closed by the registry while sending (broken pipe)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		cause = "connection closed by the registry before the response was complete"
	case oerr != nil && oerr.Err != nil:
		cause = oerr.Err.Error()
	}
	uerr, isURL := err.(*url.Error)
	switch {
	case isURL && cause == "":
		return withoutQuery(err)
	case isURL:
		u, perr := url.Parse(uerr.URL)
		if perr != nil {
			return withoutQuery(err)
		}
		return &netError{msg: requestName(strings.ToUpper(uerr.Op), u) + ": " + cause, err: err}
	case cause != "":
		return &netError{msg: cause, err: err}
	}
	return err
}

// withoutQuery returns err, when it is a *url.Error, with the query dropped from its URL.
func withoutQuery(err error) error {
	uerr, ok := err.(*url.Error)
	if !ok {
		return err
	}
	u, perr := url.Parse(uerr.URL)
	if perr != nil || (u.RawQuery == "" && u.User == nil) {
		return err
	}
	u.RawQuery, u.User = "", nil
	c := *uerr
	c.URL = u.String()
	return &c
}
