package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var idSeq atomic.Int64

type env struct {
	cfg    Config
	lower  string
	upper  string
	merged string
}

func requireRuntime(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("executor tests need root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static not installed")
	}
}

// newEnv builds a busybox rootfs as the lower layer of a fresh overlay. It
// deliberately lacks /proc, /dev, /sys, /etc/hosts and /etc/resolv.conf so
// every run has mount stubs to clean up.
func newEnv(t *testing.T) *env { return newEnvWith(t, false) }

func newEnvWith(t *testing.T, newAPI bool) *env {
	t.Helper()
	requireRuntime(t)
	base := t.TempDir()
	e := &env{
		cfg:    Config{StateDir: filepath.Join(base, "state")},
		lower:  filepath.Join(base, "lower"),
		upper:  filepath.Join(base, "upper"),
		merged: filepath.Join(base, "merged"),
	}
	work := filepath.Join(base, "work")
	for _, d := range []string{e.lower, e.upper, e.merged, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	buildRootfs(t, e.lower)
	if newAPI {
		// The way internal/snapshot mounts: fsopen + lowerdir+, one empty
		// extra lower on top.
		top := filepath.Join(base, "top")
		if err := os.MkdirAll(top, 0o755); err != nil {
			t.Fatal(err)
		}
		mountNewAPI(t, []string{top, e.lower}, e.upper, work, e.merged)
	} else {
		data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", e.lower, e.upper, work)
		if err := unix.Mount("overlay", e.merged, "overlay", 0, data); err != nil {
			t.Fatalf("mount overlay: %v", err)
		}
	}
	t.Cleanup(func() {
		if err := unix.Unmount(e.merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount overlay: %v", err)
		}
	})
	return e
}

func buildRootfs(t *testing.T, root string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "tmp", "root", "home/app"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "home/app"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type result struct {
	stdout, stderr string
	err            error
}

func (e *env) run(t *testing.T, ctx context.Context, spec Spec) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if spec.ID == "" {
		spec.ID = fmt.Sprintf("strata-test-%d-%d", os.Getpid(), idSeq.Add(1))
	}
	spec.Rootfs = e.merged
	spec.Stdout, spec.Stderr = &stdout, &stderr
	if spec.Env == nil {
		spec.Env = []string{"PATH=/bin"}
	}
	err := Run(ctx, e.cfg, spec)
	return result{stdout.String(), stderr.String(), err}
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func (e *env) requireNoState(t *testing.T) {
	t.Helper()
	out, err := exec.Command("runc", "--root", e.cfg.StateDir, "list", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("runc list: %v: %s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Fatalf("containers left in state dir: %s", s)
	}
}

func upperEntries(t *testing.T, upper string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(upper, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != upper {
			rel, _ := filepath.Rel(upper, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCheck(t *testing.T) {
	requireRuntime(t)
	if err := Check(Config{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	err := Check(Config{Runtime: "no-such-runtime-xyz"})
	want := "no-such-runtime-xyz not found in PATH: install it (apt-get install no-such-runtime-xyz) or pass --runtime"
	if err == nil || err.Error() != want {
		t.Fatalf("Check(missing) = %v, want %q", err, want)
	}
	t.Setenv("PATH", t.TempDir())
	err = Check(Config{})
	if err == nil || err.Error() != "runc not found in PATH: install it (apt-get install runc) or pass --runtime" {
		t.Fatalf("Check without runc = %v", err)
	}
}

func TestOutputExitAndEnv(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	r := e.run(t, ctx, Spec{Args: sh("echo out; echo err >&2"), Env: []string{"PATH=/bin"}})
	if r.err != nil || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Fatalf("echo: %+v", r)
	}

	r = e.run(t, ctx, Spec{Args: sh("exit 3")})
	var ee *ExitError
	if !errors.As(r.err, &ee) || ee.Code != 3 {
		t.Fatalf("exit 3: err = %v (%T)", r.err, r.err)
	}

	r = e.run(t, ctx, Spec{Args: sh(`echo "$FOO|$HOME|$PATH|$(hostname)"`), Env: []string{"FOO=bar baz"}})
	if r.err != nil || r.stdout != "bar baz|/root|"+DefaultPath+"|buildkitsandbox\n" {
		t.Fatalf("env defaults: %+v", r)
	}
	r = e.run(t, ctx, Spec{Args: sh(`echo "$HOME"; hostname`), Env: []string{"PATH=/bin", "HOME=/custom"}, Hostname: "box"})
	if r.err != nil || r.stdout != "/custom\nbox\n" {
		t.Fatalf("env override: %+v", r)
	}

	r = e.run(t, ctx, Spec{Args: []string{"/no/such/binary"}})
	if r.err == nil || errors.As(r.err, &ee) {
		t.Fatalf("missing binary should be a runtime error, not an exit code: %v", r.err)
	}
	e.requireNoState(t)
}

func TestCwdAndUser(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	r := e.run(t, ctx, Spec{Args: sh("pwd"), Cwd: "/work/dir"})
	if r.err != nil || r.stdout != "/work/dir\n" {
		t.Fatalf("cwd: %+v", r)
	}
	fi, err := os.Stat(filepath.Join(e.upper, "work/dir"))
	if err != nil || fi.Mode().Perm() != 0o755 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("cwd should be created root-owned 0755 in the layer: %v %v", fi, err)
	}

	r = e.run(t, ctx, Spec{Args: sh("id -u; id -g; id -G; echo $HOME; touch /tmp/made-by-app"), User: "app"})
	if r.err != nil || r.stdout != "1000\n1000\n1000 2000\n/home/app\n" {
		t.Fatalf("user app: %+v", r)
	}
	fi, err = os.Lstat(filepath.Join(e.merged, "tmp/made-by-app"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
		t.Fatalf("file made by app owned by %d:%d", st.Uid, st.Gid)
	}

	// A non-root user must not hold capabilities: chown to root fails.
	r = e.run(t, ctx, Spec{Args: sh("chown 0 /tmp/made-by-app"), User: "1000:1000"})
	if r.err == nil {
		t.Fatal("non-root user could chown")
	}
	r = e.run(t, ctx, Spec{Args: sh("chown 1234 /tmp/made-by-app && stat -c %u /tmp/made-by-app")})
	if r.err != nil || r.stdout != "1234\n" {
		t.Fatalf("root chown: %+v", r)
	}

	r = e.run(t, ctx, Spec{Args: sh("true"), User: "nobody"})
	if r.err == nil || !strings.Contains(r.err.Error(), "unable to find user nobody: no matching entries in passwd file") {
		t.Fatalf("unknown user: %v", r.err)
	}
}

func TestNoChangesLeaveEmptyUpper(t *testing.T) {
	e := newEnv(t)
	tmp := t.TempDir()
	r := e.run(t, context.Background(), Spec{
		Args: sh("ls / >/dev/null; cat /etc/hosts /etc/resolv.conf >/dev/null; ls /dev/null /dev/shm /cache"),
		Mounts: []Mount{
			{Type: "bind", Source: tmp, Target: "/root/.cache/deep/x"},
			{Type: "tmpfs", Target: "/cache"},
		},
	})
	if r.err != nil {
		t.Fatalf("run: %+v", r)
	}
	if got := upperEntries(t, e.upper); len(got) != 0 {
		t.Fatalf("upperdir not empty after a run that wrote nothing: %v", got)
	}
	// The overlay was remounted to drop copied-up dirs; it must still work.
	r = e.run(t, context.Background(), Spec{Args: sh("echo x > /etc/new && cat /etc/passwd >/dev/null")})
	if r.err != nil {
		t.Fatalf("run after cleanup: %+v", r)
	}
	got := upperEntries(t, e.upper)
	if strings.Join(got, " ") != "etc etc/new" {
		t.Fatalf("upper after writing /etc/new = %v", got)
	}
}

func mountNewAPI(t *testing.T, lowers []string, upper, work, target string) {
	t.Helper()
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		t.Skipf("no fsopen: %v", err)
	}
	defer unix.Close(fd)
	for _, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			t.Skipf("no lowerdir+: %v", err)
		}
	}
	for k, v := range map[string]string{"upperdir": upper, "workdir": work, "index": "off"} {
		if err := unix.FsconfigSetString(fd, k, v); err != nil {
			t.Fatalf("fsconfig %s: %v", k, err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		t.Fatal(err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatal(err)
	}
}

func TestNoChangesNewMountAPI(t *testing.T) {
	e := newEnvWith(t, true)
	r := e.run(t, context.Background(), Spec{
		Args:   sh("cat /etc/passwd /etc/hosts >/dev/null"),
		Mounts: []Mount{{Type: "tmpfs", Target: "/root/.cache"}},
	})
	if r.err != nil {
		t.Fatalf("run: %+v", r)
	}
	if got := upperEntries(t, e.upper); len(got) != 0 {
		t.Fatalf("upperdir not empty: %v", got)
	}
	mi, err := overlayMount(e.merged)
	if err != nil || mi == nil {
		t.Fatalf("overlay gone after remount: %v", err)
	}
	if !strings.Contains(strings.Join(mi.superOpt, ","), "lowerdir+=") || mi.attrs&unix.MOUNT_ATTR_NODEV == 0 {
		t.Fatalf("remount changed options: %+v", mi)
	}
	if r := e.run(t, context.Background(), Spec{Args: sh("ls /bin/busybox")}); r.err != nil {
		t.Fatalf("run after remount: %+v", r)
	}
}

// When the overlay is busy it cannot be remounted; the copied-up parents stay
// but look exactly like their lower originals.
func TestBusyOverlayKeepsIdenticalCopyUps(t *testing.T) {
	e := newEnv(t)
	busy, err := os.Open(filepath.Join(e.merged, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	before, err := os.Stat(filepath.Join(e.lower, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	if r := e.run(t, context.Background(), Spec{Args: sh("true")}); r.err != nil {
		t.Fatalf("run: %+v", r)
	}
	got := upperEntries(t, e.upper)
	if strings.Join(got, " ") != "etc" {
		t.Fatalf("upper = %v, want only the copied-up etc", got)
	}
	after, err := os.Stat(filepath.Join(e.upper, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Fatalf("copied-up etc differs: %v %v vs %v %v", after.ModTime(), after.Mode(), before.ModTime(), before.Mode())
	}
}

func TestWritesOnMountTargetsAreKept(t *testing.T) {
	e := newEnv(t)
	// The step creates a file at a path we also treat as a stub's parent.
	r := e.run(t, context.Background(), Spec{
		Args:   sh("echo hi > /root/keep"),
		Mounts: []Mount{{Type: "tmpfs", Target: "/root/cache"}},
	})
	if r.err != nil {
		t.Fatalf("run: %+v", r)
	}
	got := upperEntries(t, e.upper)
	if strings.Join(got, " ") != "root root/keep" {
		t.Fatalf("upper = %v", got)
	}
}

func TestMounts(t *testing.T) {
	e := newEnv(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "in.txt"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "ro.txt"), []byte("read only\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, context.Background(), Spec{
		Args: sh(`cat /src/in.txt /ro/ro.txt; echo new > /src/out.txt; grep -q ' /scratch tmpfs' /proc/mounts && echo tmpfs;
			echo x > /scratch/f && cat /scratch/f; if echo no > /ro/ro.txt; then echo WRITABLE; fi; touch /ro/new 2>/dev/null || echo ro-ok`),
		Mounts: []Mount{
			{Type: "bind", Source: src, Target: "/src"},
			{Type: "bind", Source: ro, Target: "/ro", ReadOnly: true},
			{Type: "tmpfs", Target: "/scratch", Options: []string{"size=1m"}},
		},
	})
	if r.err != nil {
		t.Fatalf("run: %+v", r)
	}
	if r.stdout != "from host\nread only\ntmpfs\nx\nro-ok\n" {
		t.Fatalf("stdout = %q stderr = %q", r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(src, "out.txt")); err != nil || string(b) != "new\n" {
		t.Fatalf("write through rw bind: %q %v", b, err)
	}
	if got := upperEntries(t, e.upper); len(got) != 0 {
		t.Fatalf("mounts left stubs in the layer: %v", got)
	}
}

func TestStandardEnvironment(t *testing.T) {
	e := newEnv(t)
	r := e.run(t, context.Background(), Spec{Args: sh(`
		for d in null zero random urandom tty full ptmx; do test -e /dev/$d || echo missing /dev/$d; done
		head -c 4 /dev/zero | wc -c
		test -d /dev/pts && test -d /dev/shm && test -d /dev/mqueue || echo missing dev dirs
		touch /sys/x 2>/dev/null && echo sys-writable
		echo 1 > /proc/sys/kernel/hostname 2>/dev/null && echo procsys-writable
		test -s /proc/kcore && echo kcore-visible
		grep -q buildkitsandbox /etc/hosts || echo no-hostname-in-hosts
		echo hi > /etc/hosts 2>/dev/null && echo hosts-writable
		test -t 1 && echo tty
		grep -E '^(CapEff|NoNewPrivs)' /proc/self/status
		echo pid $$
		ulimit -n
	`)})
	if r.err != nil {
		t.Fatalf("run: %+v", r)
	}
	want := "4\nCapEff:\t00000000a80425fb\nNoNewPrivs:\t0\npid 1\n1024\n"
	if r.stdout != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s\nstderr: %s", r.stdout, want, r.stderr)
	}

	r = e.run(t, context.Background(), Spec{Insecure: true, Args: sh(`grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; mkdir /tmp/m && mount -t tmpfs none /tmp/m && echo mounted`)})
	if r.err != nil || !strings.Contains(r.stdout, "NoNewPrivs:\t0") || !strings.Contains(r.stdout, "mounted") || strings.Contains(r.stdout, "CapEff:\t00000000a80425fb") {
		t.Fatalf("insecure: %+v", r)
	}
}

func TestNetwork(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello from host\n"))
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	connect := fmt.Sprintf("nc -w 3 127.0.0.1 %d </dev/null", port)

	r := e.run(t, context.Background(), Spec{Args: sh(connect)})
	if r.err != nil || r.stdout != "hello from host\n" {
		t.Fatalf("default network should reach the host: %+v", r)
	}
	r = e.run(t, context.Background(), Spec{Network: NetworkHost, Args: sh(connect)})
	if r.err != nil || r.stdout != "hello from host\n" {
		t.Fatalf("host network should reach the host: %+v", r)
	}

	r = e.run(t, context.Background(), Spec{Network: NetworkNone, Args: sh("ls /sys/class/net; cat /sys/class/net/lo/flags")})
	if r.err != nil || !strings.HasPrefix(r.stdout, "lo\n") || strings.Count(r.stdout, "\n") != 2 {
		t.Fatalf("none network interfaces: %+v", r)
	}
	// IFF_UP is bit 0: loopback must be up.
	flags := strings.TrimSpace(strings.Split(r.stdout, "\n")[1])
	var f int
	if _, err := fmt.Sscanf(flags, "0x%x", &f); err != nil || f&1 == 0 {
		t.Fatalf("lo not up in none network: flags %q", flags)
	}
	r = e.run(t, context.Background(), Spec{Network: NetworkNone, Args: sh(connect)})
	if r.err == nil || strings.Contains(r.stdout, "hello") {
		t.Fatalf("none network reached the host: %+v", r)
	}
	// Loopback inside the namespace works.
	r = e.run(t, context.Background(), Spec{Network: NetworkNone, Args: sh("(echo inside | nc -l -p 9999 &) ; sleep 0.3; nc -w 2 127.0.0.1 9999 </dev/null")})
	if r.err != nil || r.stdout != "inside\n" {
		t.Fatalf("loopback in none network: %+v", r)
	}
	if err := e.run(t, context.Background(), Spec{Network: "bridge", Args: sh("true")}).err; err == nil {
		t.Fatal("unknown network mode accepted")
	}
}

func processWithArg(arg string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				return true
			}
		}
	}
	return false
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	for _, delay := range []time.Duration{time.Millisecond, 500 * time.Millisecond} {
		marker := fmt.Sprintf("%d", 100000+idSeq.Add(1))
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(delay, cancel)
		start := time.Now()
		r := e.run(t, ctx, Spec{Args: []string{"/bin/sleep", marker}})
		took := time.Since(start)
		cancel()
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancel after %v: err = %v", delay, r.err)
		}
		if took > 5*time.Second {
			t.Fatalf("cancel took %v", took)
		}
		e.requireNoState(t)
		if processWithArg(marker) {
			t.Fatalf("sleep %s still running after cancel", marker)
		}
	}
	if got := upperEntries(t, e.upper); len(got) != 0 {
		t.Fatalf("cancelled runs left %v in the layer", got)
	}
}

func TestCleanup(t *testing.T) {
	e := newEnv(t)
	// Leave a container behind the way a crashed strata would: created by
	// the runtime directly, never deleted.
	bundle := t.TempDir()
	spec, err := buildSpec(bundle, Spec{Rootfs: e.merged, Args: []string{"/bin/sleep", "1000"}, Hostname: "x", Network: NetworkNone, Cwd: "/"}, identityRoot())
	if err != nil {
		t.Fatal(err)
	}
	writeJSON(t, filepath.Join(bundle, "config.json"), spec)
	// Never leave the container running, whatever happens below.
	t.Cleanup(func() { _ = exec.Command("runc", "--root", e.cfg.StateDir, "delete", "--force", "leftover").Run() })
	// The created container keeps its stdio open until it is deleted, so
	// nothing may wait for EOF on them: stderr goes to a file.
	errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	create := exec.CommandContext(ctx, "runc", "--root", e.cfg.StateDir, "create", "--bundle", bundle, "leftover")
	create.Stderr = errFile
	if err := create.Run(); err != nil {
		out, _ := os.ReadFile(errFile.Name())
		t.Fatalf("runc create: %v: %s", err, out)
	}
	if err := Cleanup(e.cfg); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	e.requireNoState(t)
	if err := Cleanup(Config{StateDir: filepath.Join(t.TempDir(), "absent")}); err != nil {
		t.Fatalf("Cleanup of missing state dir: %v", err)
	}
}

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "real/dir"), 0o755))
	must(os.Symlink("/real", filepath.Join(root, "abs")))
	must(os.Symlink("../../../../real/dir", filepath.Join(root, "real/up")))
	must(os.Symlink("/etc/../../../tmp", filepath.Join(root, "escape")))
	cases := map[string]string{
		"/":                 "",
		"/real/dir":         "real/dir",
		"/abs/dir/x":        "real/dir/x",
		"/real/up/y":        "real/dir/y",
		"/escape/z":         "tmp/z",
		"/../../outside":    "outside",
		"/missing/../abs/q": "real/q",
	}
	for in, want := range cases {
		got, err := resolveInRoot(root, in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got != filepath.Join(root, want) {
			t.Errorf("resolveInRoot(%s) = %s, want %s", in, got, filepath.Join(root, want))
		}
	}
	must(os.Symlink("loop", filepath.Join(root, "loop")))
	if _, err := resolveInRoot(root, "/loop/x"); err == nil {
		t.Error("symlink loop not detected")
	}
}
