package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/userns"
)

// overlayOptions keep every change a plain copy-up in upper, which is all Diff understands. They are
// optional: a kernel built without a feature rejects the option, and then the feature is off anyway.
var overlayOptions = [][2]string{{"index", "off"}, {"redirect_dir", "off"}, {"metacopy", "off"}}

// userNSOverlayOptions are overlayOptions for a user namespace: with userxattr the kernel rejects
// redirect_dir=off (which follows redirects) and takes nofollow, which also creates none.
var userNSOverlayOptions = [][2]string{{"index", "off"}, {"redirect_dir", "nofollow"}, {"metacopy", "off"}}

func overlayOpts() [][2]string {
	if userns.Running() {
		return userNSOverlayOptions
	}
	return overlayOptions
}

// errNoLowerdirPlus reports a kernel without the new mount API or without "lowerdir+" (before 6.8).
var errNoLowerdirPlus = errors.New("new mount API with lowerdir+ not supported")

// Mount mounts at target an overlay of lowers (top-most first) with, when upper != "", the writable
// upper and work dirs (on one filesystem). The overlay runs with index, redirect_dir and metacopy off
// where the kernel knows them, so Diff can read upper on its own.
//
// Shapes overlayfs cannot mount itself: a single lower without upper is bind-mounted read-only; zero
// lowers with an upper bind-mounts upper read-write (an overlay over an empty lower would behave the
// same, and Diff(upper) reads the same files); zero lowers without upper is an error.
//
// Any number of lowers (overlayfs allows up to 500) with paths of any length works: lowers are passed
// one at a time through fsconfig("lowerdir+"), and on kernels older than 6.8 through a legacy mount
// whose option string names short symlinks to the lowers when the full paths would not fit.
func Mount(lowers []string, upper, work, target string) error {
	if err := mountOverlay(lowers, upper, work, target); err != nil {
		return fmt.Errorf("mount %s: %w", target, err)
	}
	return nil
}

func mountOverlay(lowers []string, upper, work, target string) error {
	if upper != "" && work == "" {
		return errors.New("upper dir given without work dir")
	}
	switch {
	case len(lowers) == 0 && upper == "":
		return errors.New("nothing to mount: no lower and no upper dir")
	case len(lowers) == 0:
		return bindMount(upper, target, false)
	case len(lowers) == 1 && upper == "":
		return bindMount(lowers[0], target, true)
	}
	err := mountNewAPI(lowers, upper, work, target)
	if errors.Is(err, errNoLowerdirPlus) {
		return mountLegacy(lowers, upper, work, target)
	}
	return err
}

func bindMount(src, target string, readonly bool) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	if !readonly {
		return nil
	}
	// A remount must repeat the flags the mount already has: in a user namespace they are locked,
	// and dropping one (nosuid, nodev…) is refused with EPERM.
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	var sfs unix.Statfs_t
	if unix.Statfs(target, &sfs) == nil {
		for st, ms := range map[int64]uintptr{unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC, unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME} {
			if sfs.Flags&st != 0 {
				flags |= ms
			}
		}
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("make bind of %s read-only: %w", src, err)
	}
	return nil
}

// mountNewAPI builds the overlay with fsopen/fsconfig, which takes each lower as its own parameter
// and so has no limit on the total length of the lower paths.
func mountNewAPI(lowers []string, upper, work, target string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w: fsopen: %v", errNoLowerdirPlus, err)
		}
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)

	fail := func(what string, err error) error {
		if msg := fsLog(fd); msg != "" {
			return fmt.Errorf("%s: %w (%s)", what, err, msg)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	for _, opt := range overlayOpts() {
		if err := unix.FsconfigSetString(fd, opt[0], opt[1]); err != nil && !errors.Is(err, unix.EINVAL) {
			return fail("set "+opt[0]+"="+opt[1], err)
		}
	}
	fsLog(fd) // drop messages about options the kernel does not know
	if userns.Running() {
		if err := unix.FsconfigSetFlag(fd, "userxattr"); err != nil {
			return errUserNSOverlay(fail("set userxattr", err))
		}
	}
	for i, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			// Before 6.8 the parameter itself is unknown (EINVAL); a bad lower path would
			// fail the same way in the legacy mount, with its own error.
			if i == 0 && errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("%w: %v (%s)", errNoLowerdirPlus, err, fsLog(fd))
			}
			return fail("add lower "+l, err)
		}
	}
	if upper != "" {
		if err := unix.FsconfigSetString(fd, "upperdir", upper); err != nil {
			return fail("set upper "+upper, err)
		}
		if err := unix.FsconfigSetString(fd, "workdir", work); err != nil {
			return fail("set work "+work, err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		if userns.Running() && errors.Is(err, unix.EPERM) {
			return errUserNSOverlay(fail("create overlay", err))
		}
		return fail("create overlay", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fail("fsmount", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move mount: %w", err)
	}
	return nil
}

// fsLog drains the messages the kernel queued on an fs context; they say which parameter it
// disliked, which errno alone does not.
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	return strings.Join(msgs, "; ")
}

// mountLegacy mounts with mount(2), whose options must fit in one page. When the lower paths do not
// fit, it points numbered symlinks in a temporary directory at the lowers and mounts from that
// directory with a thread-private working directory, so lowerdir= names "0:1:2…" (overlayfs resolves
// the links at mount time and does not need them afterwards).
func mountLegacy(lowers []string, upper, work, target string) error {
	for _, p := range append([]string{upper, work}, lowers...) {
		if strings.ContainsAny(p, ",:\\") {
			return fmt.Errorf("path %q contains a character the overlay option string cannot carry", p)
		}
	}
	target, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	data := legacyOptions(strings.Join(lowers, ":"), upper, work, true)
	if len(data) < os.Getpagesize()-1 {
		return legacyMountWithFallback(lowers, upper, work, target, "")
	}

	linkDir, err := os.MkdirTemp("", "strata-lowers-")
	if err != nil {
		return fmt.Errorf("make lower link dir: %w", err)
	}
	defer os.RemoveAll(linkDir)
	short := make([]string, len(lowers))
	for i, l := range lowers {
		abs, err := filepath.Abs(l)
		if err != nil {
			return err
		}
		short[i] = strconv.Itoa(i)
		if err := os.Symlink(abs, filepath.Join(linkDir, short[i])); err != nil {
			return fmt.Errorf("link lower %s: %w", l, err)
		}
	}
	if upper != "" {
		if upper, err = filepath.Abs(upper); err != nil {
			return err
		}
		if work, err = filepath.Abs(work); err != nil {
			return err
		}
	}
	return legacyMountWithFallback(short, upper, work, target, linkDir)
}

func legacyOptions(lowerdir, upper, work string, withOpts bool) string {
	var b strings.Builder
	b.WriteString("lowerdir=" + lowerdir)
	if upper != "" {
		b.WriteString(",upperdir=" + upper + ",workdir=" + work)
	}
	if userns.Running() {
		b.WriteString(",userxattr")
	}
	if withOpts {
		for _, opt := range overlayOpts() {
			b.WriteString("," + opt[0] + "=" + opt[1])
		}
	}
	return b.String()
}

// legacyMountWithFallback retries without the optional options, which an older or trimmed kernel
// rejects as a whole with EINVAL.
func legacyMountWithFallback(lowers []string, upper, work, target, cwd string) error {
	lowerdir := strings.Join(lowers, ":")
	err := mountIn(cwd, target, legacyOptions(lowerdir, upper, work, true))
	if errors.Is(err, unix.EINVAL) {
		err = mountIn(cwd, target, legacyOptions(lowerdir, upper, work, false))
	}
	if err != nil {
		return fmt.Errorf("mount overlay (%d lowers): %w", len(lowers), err)
	}
	return nil
}

// mountIn calls mount(2) with relative option paths resolved against cwd. The working directory is
// process-wide, so the call runs on a locked thread that first unshares its fs context; that thread
// is never unlocked, so the Go runtime discards it instead of reusing its odd working directory.
func mountIn(cwd, target, data string) error {
	if cwd == "" {
		return unix.Mount("overlay", target, "overlay", 0, data)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs context: %w", err)
			return
		}
		if err := unix.Chdir(cwd); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", cwd, err)
			return
		}
		errc <- unix.Mount("overlay", target, "overlay", 0, data)
	}()
	return <-errc
}

// Unmount unmounts target, retrying for about a second while it is busy (a process that used the
// mount may still be exiting) and then detaching it lazily so the caller can go on.
func Unmount(target string) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EBUSY):
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s (detach after EBUSY): %w", target, err)
	}
	return nil
}
