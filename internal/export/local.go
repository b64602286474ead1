package export

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// WriteLocal copies the root filesystem at src into dest (`--output type=local`), as BuildKit's
// local exporter does on the client (fsutil's receiver with buildx's filter): every file belongs
// to the user running the build, permission bits are kept (setuid, setgid and sticky included),
// device nodes and fifos are recreated, and dest may already hold files, which are replaced.
//
// Every path is written through an os.Root on dest and an existing entry of another type is
// removed first, never followed: a symlink an earlier export left in dest (or a file there that
// links outside) cannot turn a later write into one outside dest.
func WriteLocal(src, dest string) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	uid, gid := os.Getuid(), os.Getgid()
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := writeLocalEntry(root, p, rel, info); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if err := root.Lchown(rel, uid, gid); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		// After the chown, which clears set-id bits; rel was just created as a non-symlink, so
		// Chmod and Chtimes act on it and not through it.
		if err := root.Chmod(rel, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if err := root.Chtimes(rel, info.ModTime(), info.ModTime()); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
}

func writeLocalEntry(root *os.Root, p, rel string, info fs.FileInfo) error {
	old, err := root.Lstat(rel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return err
	}
	if info.IsDir() {
		if old != nil && old.IsDir() {
			return nil
		}
		if old != nil {
			if err := root.Remove(rel); err != nil {
				return err
			}
		}
		return root.Mkdir(rel, 0o700)
	}
	if old != nil {
		// A directory that a non-directory replaces goes with its contents, as in fsutil.
		if err := root.RemoveAll(rel); err != nil {
			return err
		}
	}
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		link, err := os.Readlink(p)
		if err != nil {
			return err
		}
		return root.Symlink(link, rel)
	case info.Mode().IsRegular():
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := root.OpenFile(rel, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	default:
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("no device number for %v", info.Mode())
		}
		// os.Root has no Mknod: make the node at the parent's descriptor, opened through the root.
		parent, err := root.Open(filepath.Dir(rel))
		if err != nil {
			return err
		}
		defer parent.Close()
		if err := unix.Mknodat(int(parent.Fd()), filepath.Base(rel), st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		return nil
	}
}
