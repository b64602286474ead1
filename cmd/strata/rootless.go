package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/store"
	"github.com/strata-build/strata/internal/userns"
)

// usernsWaitEnv marks the child that was cloned into a new user namespace and must wait for its
// parent to map it before it is anyone; usernsMappedEnv marks it once it re-executed itself.
const (
	usernsWaitEnv   = "STRATA_USERNS_WAIT"
	usernsMappedEnv = "STRATA_USERNS_MAPPED"
)

// reexecRootless runs this command line for a non-root user inside a new user namespace in which
// the user is root and its /etc/subuid and /etc/subgid ranges are ids 1 and up, with its own
// mount and pid namespaces as for root. Files a build creates as root land owned by the user
// and the rest on subordinate ids, so only that namespace can manage the store: every command
// that touches it runs there.
func reexecRootless() (handled bool, code int) {
	fail := func(err error) (bool, int) {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		return true, 1
	}
	m, err := userns.Plan()
	if err != nil {
		return fail(err)
	}
	env := os.Environ()
	// Inside, the user is uid 0; the default store must stay the one the user would get.
	if os.Getenv("STRATA_ROOT") == "" {
		env = append(env, "STRATA_ROOT="+store.DefaultRoot())
	}
	runDir, err := rootlessRunDir()
	if err != nil {
		return fail(err)
	}
	env = append(env, runDirEnv+"="+runDir, usernsWaitEnv+"=1")

	r, w, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("rootless build: %w", err))
	}
	defer w.Close()
	exe, err := os.Executable()
	if err != nil {
		return fail(fmt.Errorf("rootless build: find strata's executable: %w", err))
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{r} // fd 3: one byte once the mapping is written
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | pidNamespaceFlag(),
		Pdeathsig:  syscall.SIGKILL,
	}
	code, err = runChild(cmd, func(pid int) error {
		r.Close()
		if err := m.Apply(pid); err != nil {
			return err
		}
		// w stays open until we exit: the child reads EOF from it if we died before it could
		// set its parent-death signal again (see watchParent).
		_, err := w.Write([]byte{1})
		return err
	})
	if errors.Is(err, errNotStarted) {
		return fail(fmt.Errorf("rootless build: cannot create a user namespace (%w): the kernel or a sandbox forbids it; in a container, allow unshare(CLONE_NEWUSER) (seccomp and AppArmor unconfined, or a profile that allows it), see docs/CI.md", err))
	}
	if err != nil {
		return fail(err)
	}
	return true, code
}

// awaitMapping runs in the child cloned by reexecRootless: once the parent has written the id
// mapping it executes strata again, because the capabilities of a user namespace's root are
// granted at execve and this process was started before it had a uid. It returns only on error.
func awaitMapping() int {
	// A raw read: an *os.File would close fd 3 when collected, and the exec needs it open.
	var b [1]byte
	for {
		n, err := unix.Read(3, b[:])
		if err == unix.EINTR {
			continue
		}
		if n != 1 {
			// The parent failed to map us and says why; nothing to add.
			return 1
		}
		break
	}
	// fd 3 stays open across the exec, for watchParent.
	os.Unsetenv(usernsWaitEnv)
	os.Setenv(usernsMappedEnv, "1")
	os.Setenv(nsEnv, "1")
	exe, err := os.Executable()
	if err == nil {
		err = syscall.Exec(exe, os.Args, os.Environ())
	}
	fmt.Fprintln(os.Stderr, "ERROR: rootless build: re-execute in the user namespace:", err)
	return 1
}

// watchParent runs first in the re-executed child. Gaining capabilities at execve cleared the
// parent-death signal the clone set, so it is set again; if the parent died before that, its end
// of the sync pipe is closed and the child exits instead of building for nobody.
func watchParent() {
	os.Unsetenv(usernsMappedEnv)
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "ERROR: rootless build: set parent-death signal:", err)
		os.Exit(1)
	}
	if err := unix.SetNonblock(3, true); err == nil {
		var b [1]byte
		if n, _ := unix.Read(3, b[:]); n == 0 {
			os.Exit(1) // EOF: the parent is gone
		}
	}
	unix.Close(3)
}

// rootlessRunDir is an empty directory the user owns, on which the namespace mounts the tmpfs
// that root builds mount on /run/strata (runc state, bundles): $XDG_RUNTIME_DIR/strata, else
// (XDG_RUNTIME_DIR unset or no directory) $TMPDIR/strata-run-UID, as podman does. Nothing is
// written into it outside the namespace.
func rootlessRunDir() (string, error) {
	dir := filepath.Join(os.TempDir(), "strata-run-"+strconv.Itoa(os.Getuid()))
	// su and sudo may pass on an XDG_RUNTIME_DIR that no login session created.
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		if fi, err := os.Stat(x); err == nil && fi.IsDir() {
			dir = filepath.Join(x, "strata")
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("rootless build: create run dir: %w (set XDG_RUNTIME_DIR to a directory you own)", err)
	}
	// In a shared /tmp someone else could have made it first, or made it a link.
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return "", fmt.Errorf("rootless build: %w", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR || int(st.Uid) != os.Getuid() {
		return "", fmt.Errorf("rootless build: run dir %s is not a directory owned by you: remove it or set XDG_RUNTIME_DIR", dir)
	}
	return dir, nil
}

// needsUserNS says which commands a non-root user runs inside the namespace: those that read or
// change the store's content, whose files belong to subordinate ids. The history commands read
// only records, which are the user's, and so work without a subordinate range.
func needsUserNS(sub string) bool {
	switch sub {
	case "", "help", "version", "check", "completion", "__complete", "history", "explain", "stats":
		return false
	}
	return true
}
