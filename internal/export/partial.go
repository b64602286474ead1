package export

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Outputs appear at their destination only complete. While one is written it is either an
// unnamed file (O_TMPFILE), which a SIGKILL frees with nothing left behind, or, on filesystems
// without O_TMPFILE, a hidden partial file beside the destination held under an exclusive flock
// for its writer's whole life. A partial whose lock can be taken belongs to a writer that died,
// so the next write of the same output (or of the same OCI layout) removes it. Partial names are
// recognisable ("." + destination name + partialMarker + random), so nothing strata did not
// create is ever removed.
const partialMarker = ".strata-partial-"

// namedPartials makes tests take the path of filesystems without O_TMPFILE.
var namedPartials bool

// WriteFile makes write's output appear at dest with permissions perm, atomically: readers see
// the old file or the complete new one, never a prefix, and a killed writer leaves nothing under
// dest. Partials a killed writer of dest left are swept first.
//
// The file is not fsynced before it is renamed into place. WriteFile writes output archives,
// which are not strata's state: nothing strata keeps refers to them (an output memo is trusted
// only within the boot that recorded it, see WriteFileIfChanged), and a lost archive is written
// again by the next build. A kill cannot tear one, since the kernel still writes back what the
// process wrote; only a machine crash within the writeback delay can leave dest short or empty,
// as it can the archives of `buildctl --output type=oci,dest=…` (os.Create, no fsync) and
// `docker save`. fsyncing 200 MB cost about half a second per build on the benchmark's disk
// (docs/BENCHMARKS.md).
func WriteFile(dest string, perm fs.FileMode, write func(io.Writer) error) error {
	if _, err := SweepPartials(filepath.Dir(dest), filepath.Base(dest)); err != nil {
		return err
	}
	return writeSwept(dest, perm, false, write)
}

// writeSwept is WriteFile for callers that swept the directory already; sync fsyncs the file
// before it is renamed into place (an OCI layout's files, which later exports add to).
func writeSwept(dest string, perm fs.FileMode, sync bool, write func(io.Writer) error) error {
	dir, base := filepath.Dir(dest), filepath.Base(dest)
	f, named, err := createPartial(dir, base)
	if err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	defer func() {
		if named != "" {
			os.Remove(named)
		}
		f.Close()
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("write %s: %w", dest, err)
		}
	}
	if named == "" {
		// Give the unnamed file a partial name (already locked, so no sweeper takes it), then
		// rename it over dest: linkat cannot replace an existing file.
		named = filepath.Join(dir, partialName(base))
		err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, named, unix.AT_SYMLINK_FOLLOW)
		if err != nil {
			// No /proc: root may link the descriptor itself.
			err = unix.Linkat(int(f.Fd()), "", unix.AT_FDCWD, named, unix.AT_EMPTY_PATH)
		}
		if err != nil {
			named = ""
			return fmt.Errorf("write %s: link finished file: %w", dest, err)
		}
	}
	if err := os.Rename(named, dest); err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	named = ""
	return nil
}

// createPartial opens a locked file in dir that will become base: unnamed if the filesystem
// allows (named == ""), else under a partial name.
func createPartial(dir, base string) (f *os.File, named string, err error) {
	if fd, err := openTmpfile(dir); err == nil {
		f := os.NewFile(uintptr(fd), filepath.Join(dir, "."+base+partialMarker+"unnamed"))
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, "", fmt.Errorf("lock partial output: %w", err)
		}
		return f, "", nil
	}
	for range 10 {
		p := filepath.Join(dir, partialName(base))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
		if err != nil {
			return nil, "", err
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			// A sweeper took it for a dead writer's in the instant before we locked it, and will
			// remove it: start over under another name.
			f.Close()
			continue
		}
		// A sweeper may have locked and removed it between create and flock; then it is not ours
		// to write any more.
		if sameFile(f, p) {
			return f, p, nil
		}
		f.Close()
	}
	return nil, "", errors.New("partial output keeps disappearing: another process is removing files beside it")
}

func openTmpfile(dir string) (int, error) {
	if namedPartials {
		return -1, unix.EOPNOTSUPP
	}
	return unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
}

func sameFile(f *os.File, p string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(p)
	return err == nil && os.SameFile(a, b)
}

func partialName(base string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return "." + base + partialMarker + hex.EncodeToString(b)
}

// SweepPartials removes the partials of base in dir that no live writer holds (base "" for any
// output's), and returns their paths.
func SweepPartials(dir, base string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweep partial outputs in %s: %w", dir, err)
	}
	var removed []string
	for _, e := range ents {
		if !isPartial(e.Name(), base) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		// The lock proves the writer dead, and checking the name still holds the file we locked
		// keeps a partial created between ReadDir and Open from being taken for a stale one.
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && sameFile(f, p) {
			if err := os.Remove(p); err == nil {
				removed = append(removed, p)
			}
		}
		f.Close()
	}
	return removed, nil
}

func isPartial(name, base string) bool {
	if base != "" {
		return strings.HasPrefix(name, "."+base+partialMarker)
	}
	return strings.HasPrefix(name, ".") && strings.Contains(name, partialMarker)
}
