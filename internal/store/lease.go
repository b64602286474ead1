package store

import (
	"sync"
	"syscall"
)

// What a process used, by kind. A build's Store records everything it read or wrote (records,
// layers, blobs, images, pulled-image resolutions, cache mounts); GC run by that same process
// after the build treats the set as a lease and never removes any of it, so the build's own
// result stays fully cached whatever the limit.
const (
	leaseRecord   = "record"   // cache key
	leaseLayer    = "layer"    // diffID hex
	leaseBlob     = "blob"     // sha256 hex
	leaseImage    = "image"    // manifest digest
	leaseResolved = "resolved" // escaped reference (file name under resolved/)
	leaseMount    = "mount"    // cache mount dir name
)

type lease struct {
	mu  sync.Mutex
	set map[string]map[string]bool
}

func (l *lease) add(kind, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set == nil {
		l.set = map[string]map[string]bool{}
	}
	if l.set[kind] == nil {
		l.set[kind] = map[string]bool{}
	}
	l.set[kind][id] = true
}

func (l *lease) has(kind, id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.set[kind][id]
}

func (l *lease) list(kind string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id := range l.set[kind] {
		out = append(out, id)
	}
	return out
}

// TryExclusive turns this process's shared store lock into an exclusive one without waiting.
// It reports false when another strata process holds the store (a running build, or a prune);
// the shared lock is then gone too (flock conversion is not atomic), so call it only when the
// process is done with the store except for GC.
func (s *Store) TryExclusive() bool {
	if s.lock == nil {
		return false
	}
	if syscall.Flock(int(s.lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return false
	}
	s.exclusive = true
	return true
}

// ErrBusy is returned by OpenNoWait when the lock is held incompatibly (builds running, or a prune).
var ErrBusy = errBusy{}

type errBusy struct{}

func (errBusy) Error() string { return "the store is in use by running builds" }
