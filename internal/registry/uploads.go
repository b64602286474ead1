package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// uploads remembers, for the life of a Client (one build), each blob sent to each repository: the
// image push and the cache export of one build name many of the same blobs, and uploads started
// while the build still runs (Preupload) are finished, not repeated, by the push that needs them.
// A blob that failed after its retries fails every push that needs it, without retrying again; a
// cancelled upload is forgotten.
type uploads struct {
	mu     sync.Mutex
	calls  map[string]*uploadCall // "registry/repository@digest"
	pusher *pusher
	sem    chan struct{} // bounds background uploads
}

type uploadCall struct {
	done chan struct{}
	err  error
}

// call returns the upload of key and whether the caller must perform it.
func (u *uploads) call(key string) (*uploadCall, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c, ok := u.calls[key]; ok {
		return c, false
	}
	if u.calls == nil {
		u.calls = map[string]*uploadCall{}
	}
	c := &uploadCall{done: make(chan struct{})}
	u.calls[key] = c
	return c, true
}

func (u *uploads) finish(key string, c *uploadCall, err error) {
	c.err = err
	if cancelled(err) {
		u.mu.Lock()
		delete(u.calls, key)
		u.mu.Unlock()
	}
	close(c.done)
}

func uploadKey(repo name.Repository, b Blob) string {
	return repo.Name() + "@" + b.Digest.String()
}

// Preupload starts sending b to the repository of ref in the background, so that a push at the
// end of the build finds it there. It returns at once; errors surface in the push that needs the blob (a cache
// export with ignore-error=true then ignores them like any other).
func (c *Client) Preupload(ctx context.Context, ref string, b Blob, bs BlobStore) {
	parsed, err := c.parse(ref)
	if err != nil {
		return // the push reports the bad name
	}
	r := parsed.Context()
	key := uploadKey(r, b)
	call, mine := c.ups.call(key)
	if !mine {
		return
	}
	c.ups.mu.Lock()
	if c.ups.sem == nil {
		c.ups.sem = make(chan struct{}, concurrentBlobs)
	}
	if c.ups.pusher == nil {
		c.ups.pusher = &pusher{opts: c.remoteOptions(ctx)}
	}
	sem, p := c.ups.sem, c.ups.pusher
	c.ups.mu.Unlock()
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			c.ups.finish(key, call, ctx.Err())
			return
		}
		defer func() { <-sem }()
		c.ups.finish(key, call, c.uploadOne(ctx, p, r, b, bs, nil))
	}()
}

// Wait returns when every background upload has ended (for a build that stops early).
func (c *Client) Wait() { c.bg.Wait() }

// ensureUploaded makes sure repo has b: it waits for an upload of b that is already under way
// (started during the build, or by the other push of this build to the same repository), or
// performs it, at most len(sem) at a time.
func (c *Client) ensureUploaded(ctx context.Context, p *pusher, repo name.Repository, b Blob, bs BlobStore, progress Progress, sem chan struct{}) error {
	key := uploadKey(repo, b)
	for {
		call, mine := c.ups.call(key)
		if !mine {
			select {
			case <-call.done:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			if cancelled(call.err) {
				continue // its owner stopped before finishing: do it here
			}
			return call.err
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			c.ups.finish(key, call, context.Canceled)
			return context.Cause(ctx)
		}
		err := c.uploadOne(ctx, p, repo, b, bs, progress)
		<-sem
		c.ups.finish(key, call, err)
		return err
	}
}

func cancelled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// uploadOne sends one blob unless the repository has it, retrying.
func (c *Client) uploadOne(ctx context.Context, p *pusher, repo name.Repository, b Blob, bs BlobStore, progress Progress) error {
	l, err := c.pushLayer(ctx, b, bs, progress)
	if err != nil {
		return err
	}
	err = c.retry(ctx, func() error {
		return p.do(func(rp *remote.Pusher) error { return rp.Upload(ctx, repo, l) })
	})
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.Digest, err)
	}
	return nil
}
