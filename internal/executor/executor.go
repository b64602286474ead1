// Package executor runs one RUN step: it writes an OCI runtime bundle for a
// mounted rootfs and runs it to completion with runc (or crun), leaving no
// runtime state and no mountpoint stubs behind in the rootfs.
package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/users"
)

// Config selects the OCI runtime and where it keeps container state.
type Config struct {
	Runtime  string // "runc" (default) or "crun", name or path
	StateDir string // passed as `runc --root`; the caller owns it (may be a tmpfs)
	// BundleDir holds the runtime bundles (config.json carries the step's env, secrets among
	// them); default StateDir+".bundles", so a StateDir on a private tmpfs keeps them there too.
	BundleDir string
	// NoProcessSandbox runs containers in the caller's pid namespace with its /proc bound in,
	// for hosts where a fresh proc cannot be mounted (BuildKit's --oci-worker-no-process-sandbox).
	NoProcessSandbox bool
}

func (c Config) bundleDir() string {
	if c.BundleDir != "" {
		return c.BundleDir
	}
	return filepath.Clean(c.StateDir) + ".bundles"
}

// Mount is an extra mount for the container, applied after the standard ones
// in the order given.
type Mount struct {
	Type     string // "bind" | "tmpfs"
	Source   string
	Target   string
	ReadOnly bool
	Options  []string
}

// Network modes. NetworkDefault is host networking: strata has no bridge or
// CNI setup, and RUN steps usually need to download things.
const (
	NetworkDefault = "default"
	NetworkHost    = "host"
	NetworkNone    = "none"
)

// DefaultHostname is BuildKit's, so scripts that look at it behave the same.
const DefaultHostname = "buildkitsandbox"

// DefaultPath is Docker's PATH for a container whose image sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Spec describes one process run.
type Spec struct {
	ID       string   // unique container id
	Rootfs   string   // already-mounted writable merged overlay dir
	Args     []string // argv; shell form is already wrapped by the caller
	Env      []string
	User     string // as written in the Dockerfile; resolved against Rootfs
	Cwd      string // created root-owned 0755 if missing, like Docker's WORKDIR
	Hostname string // default DefaultHostname
	Network  string // NetworkDefault (""), NetworkHost or NetworkNone
	Insecure bool   // --security=insecure: all capabilities, no masking, all devices allowed
	// ExtraHosts are added to /etc/hosts after the host's entries (--add-host).
	ExtraHosts []Host
	// Ulimits replace the default of the same name (RLIMIT_NOFILE 1024:524288) or add one.
	Ulimits []Ulimit
	ShmSize int64 // bytes of /dev/shm; 0 = 64 MiB, Docker's default
	Mounts  []Mount
	Stdout  io.Writer
	Stderr  io.Writer
}

// Host is one /etc/hosts entry.
type Host struct{ Name, IP string }

// Ulimit is a resource limit by its `ulimit` name (nofile, nproc, core…); -1 is unlimited.
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// ExitError reports that the process ran and exited non-zero. A process killed
// by a signal reports 128+signal, as a shell would.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("process exited with code %d", e.Code)
}

func (c Config) runtimeName() string {
	if c.Runtime == "" {
		return "runc"
	}
	return c.Runtime
}

func (c Config) runtimePath() (string, error) {
	name := c.runtimeName()
	p, err := exec.LookPath(name)
	if err != nil {
		base := filepath.Base(name)
		return "", fmt.Errorf("%s not found in PATH: install it (apt-get install %s) or pass --runtime", base, base)
	}
	return p, nil
}

func (c Config) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	global := append([]string{"--root", c.StateDir}, c.rootlessFlags()...)
	return exec.CommandContext(ctx, bin, append(global, args...)...)
}

// Check verifies that the runtime exists and runs, and that the kernel offers
// what Run relies on, so a build fails before its first RUN step rather than
// in the middle.
func Check(cfg Config) error {
	bin, err := cfg.runtimePath()
	if err != nil {
		return err
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w: %s", bin, err, bytes.TrimSpace(out))
	}
	if err := CheckRuntimeVersion(bin, out); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("running RUN steps needs root, or root of a user namespace: a non-root `strata build` creates one itself (docs/CI.md, Rootless); this process is in neither")
	}
	for _, ns := range []string{"mnt", "pid", "ipc", "uts", "net"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			return fmt.Errorf("kernel lacks %s namespaces: %w", ns, err)
		}
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("read /proc/filesystems: %w", err)
	}
	for _, fs := range []string{"overlay", "tmpfs", "proc", "sysfs", "devpts", "mqueue"} {
		if !hasFilesystem(fss, fs) {
			return fmt.Errorf("kernel lacks the %s filesystem (modprobe %s?)", fs, fs)
		}
	}
	return nil
}

func hasFilesystem(procFilesystems []byte, name string) bool {
	sc := bufio.NewScanner(bytes.NewReader(procFilesystems))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

// Cleanup force-deletes every container left in cfg.StateDir, e.g. after
// strata was killed mid-build.
func Cleanup(cfg Config) error {
	if cfg.StateDir == "" {
		return errors.New("executor cleanup: no state dir")
	}
	if _, err := os.Stat(cfg.StateDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	bin, err := cfg.runtimePath()
	if err != nil {
		return err
	}
	ids, err := listContainers(cfg, bin)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if err := deleteContainer(cfg, bin, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func listContainers(cfg Config, bin string) ([]string, error) {
	var stderr bytes.Buffer
	cmd := cfg.command(context.Background(), bin, "list", "-q")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s list: %w: %s", cfg.runtimeName(), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.Fields(string(out)), nil
}

// leftState reports whether the runtime keeps state for container id (runc and crun keep a
// directory per container under their --root).
func leftState(cfg Config, id string) bool {
	_, err := os.Lstat(filepath.Join(cfg.StateDir, id))
	return err == nil
}

func deleteContainer(cfg Config, bin, id string) error {
	out, err := cfg.command(context.Background(), bin, "delete", "--force", id).CombinedOutput()
	if err != nil {
		// An already-gone container is the state we want.
		if _, serr := os.Stat(filepath.Join(cfg.StateDir, id)); errors.Is(serr, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("%s delete --force %s: %w: %s", cfg.runtimeName(), id, err, bytes.TrimSpace(out))
	}
	return nil
}

// Run runs spec.Args in a new container on spec.Rootfs and waits for it. A
// non-zero exit is an *ExitError. Cancelling ctx kills the container; in every
// case the container is deleted from the runtime state before Run returns, and
// mountpoints the runtime had to create in the rootfs are removed again.
func Run(ctx context.Context, cfg Config, spec Spec) (retErr error) {
	if err := validate(cfg, &spec); err != nil {
		return err
	}
	bin, err := cfg.runtimePath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create runtime state dir: %w", err)
	}

	ident, err := users.Lookup(spec.Rootfs, spec.User)
	if err != nil {
		return fmt.Errorf("resolve user %q: %w", spec.User, err)
	}
	if err := mkdirInRoot(spec.Rootfs, spec.Cwd); err != nil {
		return fmt.Errorf("create working directory %s: %w", spec.Cwd, err)
	}

	if err := os.MkdirAll(cfg.bundleDir(), 0o700); err != nil {
		return fmt.Errorf("create bundle dir: %w", err)
	}
	bundle, err := os.MkdirTemp(cfg.bundleDir(), "strata-bundle-")
	if err != nil {
		return fmt.Errorf("create bundle dir: %w", err)
	}
	defer os.RemoveAll(bundle)

	s, err := buildSpec(bundle, spec, ident)
	if err != nil {
		return err
	}
	if cfg.NoProcessSandbox {
		shareProcesses(s)
	}
	// The cgroup names its owner so a later build can tell a dead build's leftover from a live
	// one's: runc removes it on delete, but nobody does when strata is killed.
	if s.Linux != nil && s.Linux.CgroupsPath == "" && !rootless() {
		s.Linux.CgroupsPath = cgroupsPath(spec.ID)
	}
	cfgJSON, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("encode runtime spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfgJSON, 0o600); err != nil {
		return fmt.Errorf("write runtime spec: %w", err)
	}

	targets := make([]string, 0, len(s.Mounts))
	for _, m := range s.Mounts {
		targets = append(targets, m.Destination)
	}
	stubs, err := recordStubs(spec.Rootfs, targets)
	if err != nil {
		return err
	}
	defer func() {
		if err := stubs.cleanup(); err != nil && retErr == nil {
			retErr = err
		}
	}()

	// A container left by a crash under the same id would make `run` fail; `runc run` removes
	// its container when the process exits, so a delete is needed only where runc left state
	// (a kill, a failed start). Each is a runc process, not worth starting for nothing.
	if leftState(cfg, spec.ID) {
		_ = deleteContainer(cfg, bin, spec.ID)
	}
	defer func() {
		if !leftState(cfg, spec.ID) {
			return
		}
		if err := deleteContainer(cfg, bin, spec.ID); err != nil && retErr == nil {
			retErr = err
		}
	}()

	return runContainer(ctx, cfg, bin, bundle, spec)
}

func validate(cfg Config, spec *Spec) error {
	if cfg.StateDir == "" {
		return errors.New("executor: Config.StateDir is required")
	}
	if spec.ID == "" || strings.ContainsAny(spec.ID, "/\x00") || spec.ID == "." || spec.ID == ".." {
		return fmt.Errorf("executor: invalid container id %q", spec.ID)
	}
	if !filepath.IsAbs(spec.Rootfs) {
		return fmt.Errorf("executor: rootfs %q must be absolute", spec.Rootfs)
	}
	if len(spec.Args) == 0 {
		return errors.New("executor: no command to run")
	}
	switch spec.Network {
	case "":
		spec.Network = NetworkDefault
	case NetworkDefault, NetworkHost, NetworkNone:
	default:
		return fmt.Errorf("executor: unsupported network mode %q (want default, host or none)", spec.Network)
	}
	if spec.Hostname == "" {
		spec.Hostname = DefaultHostname
	}
	if spec.Cwd == "" {
		spec.Cwd = "/"
	}
	if !filepath.IsAbs(spec.Cwd) {
		return fmt.Errorf("executor: working directory %q must be absolute", spec.Cwd)
	}
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Target) {
			return fmt.Errorf("executor: mount target %q must be absolute", m.Target)
		}
		switch m.Type {
		case "bind":
			if !filepath.IsAbs(m.Source) {
				return fmt.Errorf("executor: bind source %q must be absolute", m.Source)
			}
		case "tmpfs":
		default:
			return fmt.Errorf("executor: unsupported mount type %q for %s", m.Type, m.Target)
		}
	}
	if spec.Stdout == nil {
		spec.Stdout = io.Discard
	}
	if spec.Stderr == nil {
		spec.Stderr = io.Discard
	}
	return nil
}

// killRetry is how often a cancelled run re-sends SIGKILL: the container may
// not exist yet when ctx is cancelled while runc is still creating it.
const killRetry = 100 * time.Millisecond

// killGrace bounds how long a cancelled run waits for runc to notice its
// container died before killing runc itself.
const killGrace = 10 * time.Second

func runContainer(ctx context.Context, cfg Config, bin, bundle string, spec Spec) error {
	logPath := filepath.Join(bundle, "runtime.log")
	// runc must not be tied to ctx through CommandContext: killing runc
	// would orphan the container instead of stopping it.
	cmd := cfg.command(context.Background(), bin,
		"--log", logPath, "--log-format", "json",
		"run", "--bundle", bundle, spec.ID)
	cmd.Stdin = nil // /dev/null: a RUN step never reads the terminal

	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("create stderr pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	// If strata dies, runc must die with it rather than keep building.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); _, _ = io.Copy(spec.Stdout, outR) }()
	go func() { defer copies.Done(); _, _ = io.Copy(spec.Stderr, errR) }()

	// Pdeathsig fires when the forking thread exits, not the process, so
	// the fork must happen on a thread Go will not retire under us, and the
	// thread must stay ours until runc is gone: once unlocked, another
	// goroutine may lock it and exit (snapshot.mountIn does, by design),
	// which makes Go discard the thread and the kernel SIGKILL runc, and
	// with it this step's container (exit code 137 under parallel stages).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		copies.Wait()
		return fmt.Errorf("start %s: %w", cfg.runtimeName(), err)
	}

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var waitErr error
	cancelled := false
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		cancelled = true
		waitErr = killAndWait(cfg, bin, spec.ID, cmd, done)
	}

	// The pipes close when the last process holding them exits; the pid
	// namespace guarantees that is the container init. Bound the wait anyway
	// in case something outside the namespace inherited them.
	copied := make(chan struct{})
	go func() { copies.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
		outR.Close()
		errR.Close()
		<-copied
	}
	outR.Close()
	errR.Close()

	if cancelled {
		return fmt.Errorf("run %s: %w", spec.ID, ctx.Err())
	}
	if waitErr == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) {
		return fmt.Errorf("wait for %s: %w", cfg.runtimeName(), waitErr)
	}
	if msg := runtimeError(logPath); msg != "" {
		return fmt.Errorf("%s run %s: %s", cfg.runtimeName(), spec.ID, msg)
	}
	code := ee.ExitCode()
	if code < 0 {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	return &ExitError{Code: code}
}

func killAndWait(cfg Config, bin, id string, cmd *exec.Cmd, done <-chan error) error {
	tick := time.NewTicker(killRetry)
	defer tick.Stop()
	deadline := time.After(killGrace)
	for {
		_ = cfg.command(context.Background(), bin, "kill", id, "KILL").Run()
		select {
		case err := <-done:
			return err
		case <-tick.C:
		case <-deadline:
			_ = cmd.Process.Kill()
			return <-done
		}
	}
}

// runtimeError returns the runtime's own error from its JSON log, so a failure
// to start the container is not mistaken for the process exiting 1.
func runtimeError(logPath string) string {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	var msgs []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) != nil {
			continue
		}
		if entry.Level == "error" || entry.Level == "fatal" {
			msgs = append(msgs, entry.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}

// ---- cgroups of killed builds ----

// ownerPID is this process's pid as the host's /proc shows it, read before anything can remount
// /proc: a build re-executed into its own pid namespace is pid 1 there, which would name nothing.
var ownerPID = hostPID()

func hostPID() int {
	data, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if pid, err := strconv.Atoi(f[0]); err == nil && pid > 0 {
						return pid
					}
				}
			}
		}
	}
	return os.Getpid()
}

// cgroupPrefix starts the name of every cgroup strata's containers run in:
// strata-<owner pid>-<container id without its "strata-">.
const cgroupPrefix = "strata-"

// CgroupName is the cgroup a container of this process runs in.
func CgroupName(id string) string {
	return cgroupPrefix + strconv.Itoa(ownerPID) + "-" + strings.TrimPrefix(id, cgroupPrefix)
}

// CgroupOwner returns the pid a cgroup name from CgroupName carries.
func CgroupOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, cgroupPrefix)
	if !ok {
		return 0, false
	}
	num, id, ok := strings.Cut(rest, "-")
	if !ok || id == "" {
		return 0, false
	}
	pid, err := strconv.Atoi(num)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != num {
		return 0, false
	}
	return pid, true
}

// cgroupsPath places the container where runc's default would, under the caller's cgroup and so
// within its limits: a relative path does that on cgroup v1, while v2 reads a relative path from
// the hierarchy's root and puts the default beside the caller's own cgroup.
func cgroupsPath(id string) string {
	name := CgroupName(id)
	var fs unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &fs) != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return name
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return name
	}
	for _, line := range strings.Split(string(data), "\n") {
		if own, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(filepath.Dir(own), name)
		}
	}
	return "/" + name
}

// cgroupDirs are the directories a container cgroup of this process can be in: per hierarchy,
// its root, the caller's own cgroup (v1, relative path) and that cgroup's parent (v2).
func cgroupDirs() []string {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	own, _ := os.ReadFile("/proc/self/cgroup")
	seen := map[string]bool{}
	var dirs []string
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		root, mp := unescapeOctal(f[3]), unescapeOctal(f[4])
		add(mp)
		path, ok := ownCgroup(string(own), g[0] == "cgroup2", strings.Split(g[2], ","))
		if !ok {
			continue
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		add(filepath.Join(mp, rel))
		if rel != "." {
			add(filepath.Dir(filepath.Join(mp, rel)))
		}
	}
	return dirs
}

// ownCgroup finds in /proc/self/cgroup the path of the hierarchy mounted with these options.
func ownCgroup(procCgroup string, v2 bool, superOpts []string) (string, bool) {
	opts := map[string]bool{}
	for _, o := range superOpts {
		opts[o] = true
	}
	for _, line := range strings.Split(procCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if v2 {
			if parts[0] == "0" && parts[1] == "" {
				return parts[2], true
			}
			continue
		}
		if parts[1] == "" {
			continue
		}
		all := true
		for _, c := range strings.Split(parts[1], ",") {
			if !opts[c] {
				all = false
			}
		}
		if all {
			return parts[2], true
		}
	}
	return "", false
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ownerAlive reports whether pid still runs; a pid reused by another process counts as alive,
// which only leaves a leftover for later. A zombie is dead: a killed build's namespace child
// stays one until whoever inherited it reaps it.
func ownerAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	// pid (comm) state …; comm may hold anything, so look after its last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		if st := stat[i+2]; st == 'Z' || st == 'X' {
			return false
		}
	}
	return true
}

// SweepCgroups removes the container cgroups of strata processes that died without removing
// them (killed builds), after killing any process still in one (a container orphaned by a build
// that ran outside a private pid namespace). Cgroups of live owners and anything not named by
// CgroupName are left alone. It must run in the pid namespace the owners' pids were read in (the
// host's, before re-executing into a private one). It returns the cgroups it removed.
func SweepCgroups() ([]string, error) {
	var removed []string
	var errs []error
	for _, dir := range cgroupDirs() {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			pid, ok := CgroupOwner(e.Name())
			if !ok || ownerAlive(pid) {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if err := removeCgroup(p); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, p)
		}
	}
	return removed, errors.Join(errs...)
}

// removeCgroup kills what is left in a dead build's cgroup and removes it. rmdir of a cgroup
// fails while a process is in it, so nothing live is ever removed under a process.
func removeCgroup(p string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Rmdir(p)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove leftover cgroup %s: %w", p, err)
		}
		procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(procs)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}
