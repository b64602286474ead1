package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/userns"
)

// nsEnv marks the re-executed child that already runs in its own namespaces.
const nsEnv = "STRATA_IN_NAMESPACE"

// runDirEnv names the directory a rootless build mounts its private tmpfs on: /run is root's, so
// the unprivileged parent picks one it owns (rootless.go) and passes it down.
const runDirEnv = "STRATA_RUN_DIR"

// runStateDir is where runc keeps container state; inside our namespace it is a private tmpfs.
func runStateDir() string {
	if d := os.Getenv(runDirEnv); d != "" {
		return d
	}
	return "/run/strata"
}

// reexecInNamespace runs this same command line as PID 1 of a new PID and mount namespace. Every
// overlay mount and runc container of the build lives and dies with that namespace, so even a
// SIGKILL of strata leaves no mount, no container process and no runc state behind. A non-root
// user gets a user namespace around them as well (rootless.go).
func reexecInNamespace() (handled bool, code int) {
	if os.Getenv(nsEnv) != "" {
		return false, 0
	}
	if os.Geteuid() != 0 {
		return reexecRootless()
	}
	exe, err := os.Executable()
	if err != nil {
		return false, 0
	}
	// Only here do pids mean what they meant to the builds that named their cgroups by them;
	// inside the namespace the dead owners are invisible.
	sweepCgroups()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | pidNamespaceFlag(),
		Pdeathsig:  syscall.SIGKILL,
	}
	code, err = runChild(cmd, nil)
	if errors.Is(err, errNotStarted) {
		// Kernels or sandboxes without namespace support: run in place.
		if os.Getenv("STRATA_DEBUG") != "" {
			fmt.Fprintln(os.Stderr, "strata: no private namespace:", err)
		}
		return false, 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
	}
	return true, code
}

// pidNamespaceFlag is CLONE_NEWPID, except under --no-process-sandbox: that build keeps the /proc
// it was started with (it cannot mount its own), and a /proc of another pid namespace names other
// processes by the pids runc sees (runc reads /proc/PID of the container it starts), so such a
// build stays in the pid namespace its /proc belongs to, as BuildKit's no-process-sandbox worker
// does. A kill of such a build can then leave its RUN step's processes running.
func pidNamespaceFlag() uintptr {
	for _, a := range os.Args[1:] {
		if a == "--" {
			break
		}
		if a == "--no-process-sandbox" || a == "--no-process-sandbox=true" {
			return 0
		}
	}
	return syscall.CLONE_NEWPID
}

// errNotStarted marks a child that could not be started at all.
var errNotStarted = errors.New("namespace child not started")

// runChild starts cmd with our stdio, runs started (if any) on it, forwards SIGINT, SIGTERM and
// SIGHUP to it and returns its exit code, 128+signal for a signalled child as a shell would.
func runChild(cmd *exec.Cmd, started func(pid int) error) (int, error) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Pdeathsig fires when the forking thread exits, so keep this goroutine on one thread.
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		runtime.UnlockOSThread()
		return 1, fmt.Errorf("%w: %w", errNotStarted, err)
	}
	if started != nil {
		if err := started(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return 1, err
		}
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// setupNamespace makes our mounts private and gives runc a state dir that vanishes with us. The
// runtime bundles (whose config.json holds the step's env, env secrets included) live beside that
// state dir, and /dev/shm, where file secrets are written, becomes a tmpfs of our own: a SIGKILL
// leaves none of them on the host, because the kernel drops the tmpfs with the namespace.
//
// With shareProc (--no-process-sandbox) /proc stays the one we were started with: a user namespace
// may mount a new proc only where the kernel sees an unmasked one, which an unprivileged
// container's /proc is not.
func setupNamespace(shareProc bool) error {
	if os.Getenv(nsEnv) == "" {
		sweepCgroups()
		return os.MkdirAll(runStateDir(), 0o700)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if !shareProc {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			if errors.Is(err, unix.EPERM) && userns.Running() {
				return fmt.Errorf("mount /proc: %w: in a user namespace the kernel allows it only while no part of /proc is masked, as an unprivileged container's is: unmask it (docker run --security-opt systempaths=unconfined; Kubernetes securityContext.procMount: Unmasked) or build with --no-process-sandbox (see docs/CI.md)", err)
			}
			return fmt.Errorf("mount /proc: %w", err)
		}
	}
	if err := os.MkdirAll(runStateDir(), 0o700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", runStateDir(), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return fmt.Errorf("mount runc state dir: %w", err)
	}
	if err := os.MkdirAll(secretDir, 0o1777); err != nil {
		return fmt.Errorf("create %s: %w", secretDir, err)
	}
	if err := unix.Mount("tmpfs", secretDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777"); err != nil {
		return fmt.Errorf("mount private %s for secrets: %w", secretDir, err)
	}
	return nil
}

// secretDir is where RUN --mount=type=secret files are written (memory-backed, never the store).
const secretDir = "/dev/shm"

// sweepCgroups removes the cgroups killed builds left; a failure only leaves them for the next
// build, so it is reported, never fatal.
func sweepCgroups() {
	if os.Geteuid() != 0 {
		return
	}
	if _, err := executor.SweepCgroups(); err != nil {
		fmt.Fprintln(os.Stderr, "warning:", err)
	}
}

// runcStateDir is private to this build: inside our namespace a tmpfs that dies with us; without
// one, a per-process directory, and directories of builds that died are cleaned here, so no build
// ever touches another live build's containers.
func runcStateDir() string {
	if os.Getenv(nsEnv) != "" {
		return filepath.Join(runStateDir(), "runc")
	}
	ents, _ := os.ReadDir(runStateDir())
	for _, e := range ents {
		name, bundles := strings.CutSuffix(e.Name(), ".bundles")
		pid, err := strconv.Atoi(strings.TrimPrefix(name, "runc-"))
		if err != nil || !strings.HasPrefix(name, "runc-") || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			dir := filepath.Join(runStateDir(), e.Name())
			if !bundles {
				executor.Cleanup(executor.Config{StateDir: dir})
			}
			os.RemoveAll(dir)
		}
	}
	return filepath.Join(runStateDir(), "runc-"+strconv.Itoa(os.Getpid()))
}
