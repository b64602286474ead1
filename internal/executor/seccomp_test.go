package executor

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/strata-build/strata/internal/users"
)

func specFor(t *testing.T, spec Spec, ident users.Identity) *specs.Spec {
	t.Helper()
	if spec.Rootfs == "" {
		spec.Rootfs = t.TempDir()
	}
	if spec.Args == nil {
		spec.Args = []string{"/bin/true"}
	}
	s, err := buildSpec(t.TempDir(), spec, ident)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func syscallRule(p *specs.LinuxSeccomp, name string) (specs.LinuxSyscall, bool) {
	for _, r := range p.Syscalls {
		if slices.Contains(r.Names, name) && len(r.Args) == 0 {
			return r, true
		}
	}
	return specs.LinuxSyscall{}, false
}

func TestSpecSeccompDefaultProfile(t *testing.T) {
	if !seccompEnabled() {
		t.Skip("kernel without seccomp")
	}
	s := specFor(t, Spec{}, identityRoot())
	p := s.Linux.Seccomp
	if p == nil {
		t.Fatal("no seccomp profile in the spec of a default step")
	}
	if p.DefaultAction != specs.ActErrno {
		t.Errorf("default action %q, want %q", p.DefaultAction, specs.ActErrno)
	}
	if want := nativeArch(); want != "" && !slices.Contains(p.Architectures, want) {
		t.Errorf("architectures %v lack the native %s", p.Architectures, want)
	}
	// Docker's profile lets these through only with CAP_SYS_ADMIN, which a
	// default step does not have.
	for _, name := range []string{"unshare", "mount", "setns", "bpf", "kexec_load", "init_module"} {
		if _, ok := syscallRule(p, name); ok {
			t.Errorf("%s is allowed unconditionally", name)
		}
	}
	for _, name := range []string{"read", "write", "execve", "clone3", "openat"} {
		r, ok := syscallRule(p, name)
		if name == "clone3" {
			// clone3 answers ENOSYS so libc falls back to clone, whose
			// namespace flags the profile can inspect.
			if !ok || r.Action != specs.ActErrno {
				t.Errorf("clone3 rule %+v, want an errno rule", r)
			}
			continue
		}
		if !ok || r.Action != specs.ActAllow {
			t.Errorf("%s is not allowed: %+v", name, r)
		}
	}
}

// nativeArch is the seccomp name of the architecture the test runs on, for
// the two strata is tested on.
func nativeArch() specs.Arch {
	switch runtime.GOARCH {
	case "amd64":
		return specs.ArchX86_64
	case "arm64":
		return specs.ArchAARCH64
	}
	return ""
}

func TestSpecInsecureHasNoSeccompOrMasking(t *testing.T) {
	s := specFor(t, Spec{Insecure: true}, identityRoot())
	if s.Linux.Seccomp != nil {
		t.Error("--security=insecure step has a seccomp profile")
	}
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("--security=insecure step masks %v, read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}

func TestSpecMaskedAndReadonlyPaths(t *testing.T) {
	s := specFor(t, Spec{}, identityRoot())
	// containerd v2.3's defaults (BuildKit v0.33), which include Docker's.
	for _, p := range []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi",
	} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s is not masked", p)
		}
	}
	for _, p := range thermalThrottlePaths() {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s is not masked", p)
		}
	}
	if want := []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}; !slices.Equal(s.Linux.ReadonlyPaths, want) {
		t.Errorf("read-only paths %v, want %v", s.Linux.ReadonlyPaths, want)
	}
	// Appending the host's paths must not grow the shared list.
	if len(maskedPaths) != 12 {
		t.Errorf("maskedPaths was modified: %v", maskedPaths)
	}
}

func TestSpecCapabilities(t *testing.T) {
	// containerd's defaultUnixCaps, BuildKit's default for RUN.
	want := []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
	s := specFor(t, Spec{}, identityRoot())
	c := s.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !slices.Equal(set, want) {
			t.Errorf("%s set %v, want %v", name, set, want)
		}
	}
	if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Errorf("inheritable %v, ambient %v: want none (CVE-2022-24769)", c.Inheritable, c.Ambient)
	}
	// BuildKit (oci.WithNewPrivileges) leaves no_new_privs off so setuid binaries such as sudo
	// work for a non-root USER.
	if s.Process.NoNewPrivileges {
		t.Error("no_new_privs is on")
	}
}

func TestSpecRefusesMountsOverKernelFilesystems(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"dev", "proc", "sys", "usr/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/dev", filepath.Join(root, "devlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../proc/self", filepath.Join(root, "usr/lib/selfproc")); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	cases := []struct {
		target string
		typ    string
		ok     bool
	}{
		{"/", "bind", false},
		{"/dev", "bind", false},
		{"/dev/null", "bind", false},
		{"/dev/./null", "bind", false},
		{"/dev/pipes", "bind", true},
		{"/dev/shm/x", "bind", true},
		{"/proc/sys/kernel", "bind", false},
		{"/sys", "bind", false},
		{"/devlink", "bind", false},
		{"/devlink/null", "bind", false},
		{"/devlink/shm/x", "bind", true},
		{"/usr/lib/selfproc", "bind", false},
		{"/tmp/../dev", "bind", false},
		{"/device", "bind", true},
		{"/usr/lib/cache", "bind", true},
		{"/run/secrets/token", "bind", true},
		{"/dev/shm", "tmpfs", true},
	}
	for _, c := range cases {
		t.Run(c.target+"-"+c.typ, func(t *testing.T) {
			m := Mount{Type: c.typ, Source: src, Target: c.target}
			_, err := buildSpec(t.TempDir(), Spec{Rootfs: root, Args: []string{"/bin/true"}, Mounts: []Mount{m}}, identityRoot())
			if c.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !c.ok {
				if err == nil {
					t.Fatal("allowed")
				}
				if !strings.Contains(err.Error(), "is not allowed") || !strings.Contains(err.Error(), c.target) {
					t.Errorf("unclear error: %v", err)
				}
			}
			// An insecure step may mount anything, as it may call mount(2).
			if _, err := buildSpec(t.TempDir(), Spec{Rootfs: root, Args: []string{"/bin/true"}, Mounts: []Mount{m}, Insecure: true}, identityRoot()); err != nil {
				t.Errorf("insecure step refused: %v", err)
			}
		})
	}
}

// TestSeccompEnforced runs steps under runc and checks what the profile and
// the masks do to them.
func TestSeccompEnforced(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name     string
		script   string
		insecure bool
		want     string
	}{
		{"seccomp-mode", "grep Seccomp: /proc/self/status", false, "Seccomp:\t2"},
		{"unshare-user", "unshare -U -r true && echo escaped || echo refused", false, "refused"},
		{"unshare-mount", "unshare -m true && echo escaped || echo refused", false, "refused"},
		// A masked file reads as /dev/null; a kernel without kcore has none.
		{"kcore", "head -c 1 /proc/kcore 2>/dev/null | wc -c", false, "0"},
		{"keys", "head -c 1 /proc/keys | wc -c", false, "0"},
		{"interrupts", "head -c 1 /proc/interrupts | wc -c", false, "0"},
		{"timer-list", "head -c 1 /proc/timer_list | wc -c", false, "0"},
		{"sysrq", "echo h > /proc/sysrq-trigger && echo wrote || echo refused", false, "refused"},
		{"core-pattern", "echo x > /proc/sys/kernel/core_pattern && echo wrote || echo refused", false, "refused"},
		{"insecure-seccomp-mode", "grep Seccomp: /proc/self/status", true, "Seccomp:\t0"},
		{"insecure-unshare", "unshare -U -r true && echo unshared", true, "unshared"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.run(t, context.Background(), Spec{Args: sh(c.script), Insecure: c.insecure})
			if r.err != nil {
				t.Fatalf("run: %v\nstdout: %s\nstderr: %s", r.err, r.stdout, r.stderr)
			}
			if got := strings.TrimSpace(r.stdout); got != c.want {
				t.Errorf("got %q, want %q (stderr: %s)", got, c.want, r.stderr)
			}
		})
	}
}
