package snapshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Unpacking a base layer is file creation, tens of thousands of small files, while one goroutine
// inflates and parses the tar. Small regular files are therefore handed to a few writer
// goroutines that create, fill and stamp them, so the syscalls run on both cores and beside the
// inflating. Everything else (directories, links, whiteouts, replacements, large files) stays on
// the reading goroutine, in tar order; what a writer does can only conflict with a later entry
// that names the same path, names it as a parent or hardlink target, or removes or changes a
// directory, and before each of those the reader waits for the writers to finish (drain). A
// writer never meets an existing path: the layer directory starts empty, a file is handed out
// only if no earlier entry used its path, and a path given to a writer is not used again until
// the writers are drained.

// unpackWriters is how many writer goroutines an unpack starts; 0 writes everything in tar
// order on the reading goroutine (the tests compare the two).
var unpackWriters = 3

const (
	// maxJobBody bounds the files handed to writers, whose bodies are held in memory meanwhile;
	// larger ones are byte-bound rather than syscall-bound anyway.
	maxJobBody = 128 << 10
	jobQueue   = 64
)

var jobBufs = sync.Pool{New: func() any { b := make([]byte, maxJobBody); return &b }}

type writeJob struct {
	dirfd          int // borrowed from unpacker.dirs, which is not changed before a drain
	base, name     string
	hdr            *tar.Header
	buf            *[]byte
	body           []byte
	owned, modeSet bool
}

// writerError is a writer's failure, already naming its entry.
type writerError struct {
	name string
	err  error
}

func (e *writerError) Error() string { return fmt.Sprintf("unpack %q: %v", e.name, e.err) }
func (e *writerError) Unwrap() error { return e.err }

type writers struct {
	jobs     chan *writeJob
	done     sync.WaitGroup // the goroutines
	inflight sync.WaitGroup // the jobs handed out and not finished
	// pending holds the paths handed out since the last drain; used holds every path an entry
	// has made (or removed) so far. Only the reader uses them.
	pending, used map[string]bool
	failed        atomic.Bool
	mu            sync.Mutex
	err           error // the first failure
}

// startWriters starts n writers when dir is empty (see above); otherwise the unpack stays serial.
func (u *unpacker) startWriters(n int) {
	if n <= 0 {
		return
	}
	f, err := os.Open(u.dir)
	if err != nil {
		return
	}
	names, _ := f.Readdirnames(1)
	f.Close()
	if len(names) > 0 {
		return
	}
	w := &writers{jobs: make(chan *writeJob, jobQueue), pending: map[string]bool{}, used: map[string]bool{}}
	for range n {
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			for j := range w.jobs {
				if !w.failed.Load() {
					if err := j.run(); err != nil {
						w.fail(&writerError{name: j.name, err: err})
					}
				}
				jobBufs.Put(j.buf)
				w.inflight.Done()
			}
		}()
	}
	u.w = w
}

func (w *writers) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	w.failed.Store(true)
}

// stopWriters ends the writer goroutines after their jobs; it is safe to call more than once.
func (u *unpacker) stopWriters() {
	if u.w == nil {
		return
	}
	close(u.w.jobs)
	u.w.done.Wait()
	u.w = nil
}

// drain waits until every job handed out is done and reports the first failure.
func (u *unpacker) drain() error {
	if u.w == nil {
		return nil
	}
	u.w.inflight.Wait()
	clear(u.w.pending)
	return u.writersErr()
}

// writersErr reports a writer's failure without waiting.
func (u *unpacker) writersErr() error {
	if u.w == nil || !u.w.failed.Load() {
		return nil
	}
	u.w.mu.Lock()
	defer u.w.mu.Unlock()
	return u.w.err
}

// touch is called with every path an entry is about to use (its own, its parents', a hardlink's
// target): one handed to a writer makes the reader wait for the writers first.
func (u *unpacker) touch(rel string) error {
	if u.w == nil || !u.w.pending[rel] {
		return nil
	}
	return u.drain()
}

// use notes that an entry makes rel, and reports whether no earlier one did.
func (u *unpacker) use(rel string) bool {
	if u.w == nil || u.w.used[rel] {
		return false
	}
	u.w.used[rel] = true
	return true
}

// handOff gives a small regular file at a fresh path to a writer, reading its body now. It
// reports false when the file is for the reader to write.
func (u *unpacker) handOff(fd int, base, rel string, fresh bool, hdr *tar.Header, r io.Reader, owned, modeSet bool) (bool, error) {
	if u.w == nil || !fresh || hdr.Typeflag != tar.TypeReg || hdr.Size > maxJobBody {
		return false, nil
	}
	buf := jobBufs.Get().(*[]byte)
	body := (*buf)[:hdr.Size]
	if _, err := io.ReadFull(r, body); err != nil {
		jobBufs.Put(buf)
		return true, fmt.Errorf("read: %w", err)
	}
	u.w.pending[rel] = true
	u.w.inflight.Add(1)
	u.w.jobs <- &writeJob{dirfd: fd, base: base, name: hdr.Name, hdr: hdr, buf: buf, body: body, owned: owned, modeSet: modeSet}
	return true, nil
}

func (j *writeJob) run() error {
	perm := uint32(0o600)
	if j.modeSet {
		perm = uint32(j.hdr.Mode)
	}
	f, err := unix.Openat(j.dirfd, j.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	for b := j.body; len(b) > 0; {
		n, werr := unix.Write(f, b)
		if errors.Is(werr, unix.EINTR) {
			continue
		}
		if werr == nil && n == 0 {
			werr = io.ErrShortWrite
		}
		if werr != nil {
			err = werr
			break
		}
		b = b[n:]
	}
	if err != nil {
		err = fmt.Errorf("write: %w", err)
	} else {
		err = fileMeta(f, j.hdr, j.owned, j.modeSet)
	}
	if cerr := unix.Close(f); err == nil && cerr != nil {
		err = fmt.Errorf("write: %w", cerr)
	}
	return err
}
