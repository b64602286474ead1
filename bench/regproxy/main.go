// Command regproxy is bench/run's byte-counting registry proxy for the CI scenarios.
//
//	regproxy -target 127.0.0.1:PORT -addr-file FILE
//
// It listens on a free 127.0.0.1 port (written to FILE once it accepts connections) and forwards
// to the registry at -target through testenv's counting proxy, so both builders reach the registry
// only through it. On top of testenv's totals it keeps, per blob digest, the bytes moved in each
// direction, so bench/lib/ci.py can tell layer bytes from config and cache-metadata bytes.
//
//	GET /_stats          {"totals": testenv.ProxyStats, "blobs": [...], "heads": N, "mounts": N}
//	GET /_stats?reset=1  the same, then zero every counter
//
// It exits on SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"sync"
	"syscall"

	"github.com/strata-build/strata/internal/testenv"
)

var (
	blobPath   = regexp.MustCompile(`^/v2/(.+)/blobs/([A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+)$`)
	uploadPath = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([^/]*)$`)
)

// blobKey identifies one direction of one blob in one repository.
type blobKey struct {
	Dir    string // "down" (blob GET response) or "up" (upload request bodies)
	Repo   string
	Digest string
}

// BlobStat is one row of /_stats: Bytes moved for the blob, over Requests requests.
type BlobStat struct {
	Dir      string `json:"dir"`
	Repo     string `json:"repo"`
	Digest   string `json:"digest"`
	Bytes    int64  `json:"bytes"`
	Requests int    `json:"requests"`
}

type counter struct {
	inner *testenv.Proxy

	mu       sync.Mutex
	blobs    map[blobKey]*BlobStat
	sessions map[string]int64 // upload session (UUID) -> bytes sent so far, until the closing PUT names the digest
	heads    int              // blob HEADs answered 200: blobs the registry already had
	mounts   int              // cross-repository mounts answered 201
	orphan   int64            // upload bytes whose digest was never named (failed uploads)
}

func (c *counter) add(k blobKey, n int64, req bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.blobs[k]
	if s == nil {
		s = &BlobStat{Dir: k.Dir, Repo: k.Repo, Digest: k.Digest}
		c.blobs[k] = s
	}
	s.Bytes += n
	if req {
		s.Requests++
	}
}

func (c *counter) addSession(id string, n int) {
	c.mu.Lock()
	c.sessions[id] += int64(n)
	c.mu.Unlock()
}

// finish attributes a session's bytes to the digest its closing PUT named.
func (c *counter) finish(id, repo, digest string) {
	c.mu.Lock()
	n, ok := c.sessions[id]
	delete(c.sessions, id)
	c.mu.Unlock()
	if ok {
		c.add(blobKey{"up", repo, digest}, n, true)
	}
}

func (c *counter) stats(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	out := struct {
		Totals testenv.ProxyStats `json:"totals"`
		Blobs  []BlobStat         `json:"blobs"`
		Heads  int                `json:"heads"`
		Mounts int                `json:"mounts"`
		Orphan int64              `json:"orphan_upload_bytes"`
	}{Totals: c.inner.Stats(), Heads: c.heads, Mounts: c.mounts, Orphan: c.orphan}
	for _, n := range c.sessions {
		out.Orphan += n
	}
	for _, s := range c.blobs {
		out.Blobs = append(out.Blobs, *s)
	}
	if r.URL.Query().Get("reset") == "1" {
		c.inner.Reset()
		c.blobs = map[blobKey]*BlobStat{}
		c.sessions = map[string]int64{}
		c.heads, c.mounts, c.orphan = 0, 0, 0
	}
	c.mu.Unlock()
	sort.Slice(out.Blobs, func(i, j int) bool { return out.Blobs[i].Bytes > out.Blobs[j].Bytes })
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (c *counter) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_stats" {
		c.stats(w, r)
		return
	}
	var (
		repo, digest, session string
		isBlob, isUpload      bool
	)
	if m := uploadPath.FindStringSubmatch(r.URL.Path); m != nil {
		isUpload, repo, session = true, m[1], m[2]
	} else if m := blobPath.FindStringSubmatch(r.URL.Path); m != nil {
		isBlob, repo, digest = true, m[1], m[2]
	}
	if isUpload && r.Body != nil && r.Body != http.NoBody {
		id := session
		if id == "" { // a POST with a body: a monolithic upload, named by ?digest=
			id = fmt.Sprintf("post %p", r)
		}
		r.Body = &countReader{rc: r.Body, add: func(n int) { c.addSession(id, n) }}
		session = id
	}
	rp := &httputil.ReverseProxy{
		// The Host header passes through untouched: the registry builds upload Locations from it,
		// and they must point back here.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = c.inner.Addr()
		},
		ErrorLog: log.New(io.Discard, "", 0),
		ModifyResponse: func(resp *http.Response) error {
			ok := resp.StatusCode >= 200 && resp.StatusCode < 300
			switch {
			case isBlob && r.Method == http.MethodGet && ok:
				k := blobKey{"down", repo, digest}
				c.add(k, 0, true)
				resp.Body = &countReader{rc: resp.Body, add: func(n int) { c.add(k, int64(n), false) }}
			case isBlob && r.Method == http.MethodHead && ok:
				c.mu.Lock()
				c.heads++
				c.mu.Unlock()
			case isUpload && r.Method == http.MethodPost && r.URL.Query().Has("mount") && resp.StatusCode == http.StatusCreated:
				c.mu.Lock()
				c.mounts++
				c.mu.Unlock()
			case isUpload && ok && r.URL.Query().Get("digest") != "" && session != "":
				// The closing PUT (or a monolithic POST): the body has been read by now.
				c.finish(session, repo, r.URL.Query().Get("digest"))
			}
			return nil
		},
	}
	rp.ServeHTTP(w, r)
}

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

func main() {
	target := flag.String("target", "", "registry host:port (plain HTTP)")
	addrFile := flag.String("addr-file", "", "write the proxy's host:port here once it listens")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "usage: regproxy -target HOST:PORT [-addr-file FILE]")
		os.Exit(2)
	}
	inner, err := testenv.StartProxy(*target)
	if err != nil {
		log.Fatal(err)
	}
	defer inner.Close()
	c := &counter{inner: inner, blobs: map[blobKey]*BlobStat{}, sessions: map[string]int64{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(c.serve), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	srv.Close()
}
