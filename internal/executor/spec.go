package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/users"
)

// defaultCaps is Docker's default capability set.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCaps is every capability up to CAP_CHECKPOINT_RESTORE (40), the last one
// runc 1.1 knows; naming newer ones would only produce warnings.
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// boundedCaps keeps the capabilities (indexed by number, as allCaps is) that this process's bounding
// set still holds: runc cannot grant more, and asking makes it fail with "unable to apply caps"
// when strata itself runs in a container with a reduced set (containerd's
// WithAllCurrentCapabilities does the same for BuildKit's insecure mode).
func boundedCaps(caps []string) []string {
	var out []string
	for i, c := range caps {
		if r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0); err == nil && r == 1 {
			out = append(out, c)
		}
	}
	return out
}

// The masked and read-only paths of Docker and of containerd's default spec,
// which BuildKit v0.33 uses (containerd v2.3 pkg/oci): kernel interfaces that
// leak host information or allow host changes. containerMaskedPaths adds the
// per-CPU thermal_throttle dirs containerd masks too.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

func charDev(path string, major, minor int64) specs.LinuxDevice {
	mode := os.FileMode(0o666)
	zero := uint32(0)
	return specs.LinuxDevice{Path: path, Type: "c", Major: major, Minor: minor, FileMode: &mode, UID: &zero, GID: &zero}
}

func allowDev(major, minor int64) specs.LinuxDeviceCgroup {
	return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"}
}

// additionalGids is the process's supplementary groups: the primary group first, then the
// /etc/group memberships, as BuildKit's oci.WithUIDGID makes them (ensureAdditionalGids), so
// `id` in a RUN step lists groups=GID like it does under BuildKit and Docker.
func additionalGids(ident users.Identity) []uint32 {
	if slices.Contains(ident.Groups, ident.GID) {
		return ident.Groups
	}
	return append([]uint32{ident.GID}, ident.Groups...)
}

// buildSpec turns spec into an OCI runtime spec. Files the container needs
// from the host (hosts, resolv.conf) are copied into bundle first, so the
// container sees a stable snapshot and cannot write through to the host.
func buildSpec(bundle string, spec Spec, ident users.Identity) (*specs.Spec, error) {
	env := withDefaultEnv(spec.Env, ident)

	caps := defaultCaps
	if spec.Insecure {
		caps = boundedCaps(allCaps)
	}
	pcaps := &specs.LinuxCapabilities{
		Bounding:  caps,
		Effective: caps,
		Permitted: caps,
	}
	if ident.UID != 0 {
		// As in Docker, a non-root user keeps only the bounding set: it is
		// not root, so it must not hold root's powers either.
		pcaps.Effective, pcaps.Permitted = nil, nil
	}

	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: spec.Rootfs},
		Process: &specs.Process{
			Terminal: false,
			Args:     spec.Args,
			Env:      env,
			Cwd:      spec.Cwd,
			User: specs.User{
				UID:            ident.UID,
				GID:            ident.GID,
				AdditionalGids: additionalGids(ident),
			},
			Capabilities: pcaps,
			// no_new_privs stays off, as in BuildKit (oci.WithNewPrivileges) and docker run: a
			// RUN step as a non-root USER may call sudo, su or another setuid binary. What it
			// can gain is bounded by the capability bounding set and the seccomp profile.
			NoNewPrivileges: false,
			Rlimits:         rlimits(spec.Ulimits),
		},
		Hostname: spec.Hostname,
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.MountNamespace},
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
			},
		},
	}
	if spec.Network == NetworkNone {
		// A netns without a path: runc creates it and brings up only lo.
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}

	s.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", shmSize(spec.ShmSize)}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
	}
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	if spec.Insecure {
		sysOpts = []string{"nosuid", "noexec", "nodev", "rw"}
	}
	s.Mounts = append(s.Mounts,
		specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: append([]string{"relatime"}, sysOpts...)},
	)

	hosts, err := writeHosts(bundle, spec.Hostname, spec.ExtraHosts)
	if err != nil {
		return nil, err
	}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: hosts, Options: []string{"rbind", "ro"}})
	resolv, err := copyHostFile(bundle, "/etc/resolv.conf", "")
	if err != nil {
		return nil, err
	}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: resolv, Options: []string{"rbind", "ro"}})

	for _, m := range spec.Mounts {
		if !spec.Insecure {
			if err := checkMountTarget(spec.Rootfs, m); err != nil {
				return nil, err
			}
		}
		s.Mounts = append(s.Mounts, userMount(m))
	}

	s.Linux.Devices = []specs.LinuxDevice{
		charDev("/dev/null", 1, 3), charDev("/dev/zero", 1, 5), charDev("/dev/full", 1, 7),
		charDev("/dev/random", 1, 8), charDev("/dev/urandom", 1, 9), charDev("/dev/tty", 5, 0),
	}
	s.Linux.Resources = &specs.LinuxResources{}
	if spec.Insecure {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		var anyMinor int64 = -1
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			allowDev(1, 3), allowDev(1, 5), allowDev(1, 7), allowDev(1, 8), allowDev(1, 9),
			allowDev(5, 0), allowDev(5, 2),
			{Allow: true, Type: "c", Major: ptr(int64(136)), Minor: &anyMinor, Access: "rwm"},
		}
		s.Linux.MaskedPaths = containerMaskedPaths()
		s.Linux.ReadonlyPaths = readonlyPaths
		// --security=insecure runs without a profile, as in BuildKit.
		if s.Linux.Seccomp, err = defaultSeccomp(); err != nil {
			return nil, err
		}
	}
	if rootless() {
		toRootless(s)
	}
	return s, nil
}

func ptr[T any](v T) *T { return &v }

// checkMountTarget refuses a bind mount that would lay content the build
// controls over the root, /dev itself, /dev/null, /proc or /sys. runc masks
// paths by bind-mounting the container's /dev/null and, before 1.2.8/1.3.3,
// follows it if it is a symlink (CVE-2025-31133), so a step that supplies its
// own /dev/null could unmask, or make writable, any procfs file; procfs and
// sysfs are where runc writes during setup (CVE-2025-52881). Below /dev
// (heredocs at /dev/pipes, say) a mount cannot replace /dev/null. The target
// is resolved in the rootfs as runc resolves it, so a symlink does not get
// past. tmpfs mounts start empty and runc creates device nodes after all
// mounts, so they stay allowed.
func checkMountTarget(rootfs string, m Mount) error {
	if m.Type == "tmpfs" {
		return nil
	}
	resolved, err := resolveInRoot(rootfs, m.Target)
	if err != nil {
		return fmt.Errorf("check mount target %s: %w", m.Target, err)
	}
	rel, err := filepath.Rel(rootfs, resolved)
	if err != nil {
		return fmt.Errorf("check mount target %s: %w", m.Target, err)
	}
	rel = filepath.ToSlash(rel)
	top, _, _ := strings.Cut(rel, "/")
	if rel == "." || rel == "dev" || rel == "dev/null" || top == "proc" || top == "sys" {
		where := "/" + strings.TrimPrefix(rel, ".")
		return fmt.Errorf("mount target %s (%s in the container) is not allowed: mounts over /, /dev, /dev/null, /proc and /sys would let a RUN step replace what the runtime masks; use --security=insecure for that", m.Target, where)
	}
	return nil
}

func userMount(m Mount) specs.Mount {
	switch m.Type {
	case "tmpfs":
		opts := []string{"nosuid", "nodev"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		return specs.Mount{Destination: m.Target, Type: "tmpfs", Source: "tmpfs", Options: append(opts, m.Options...)}
	default:
		opts := []string{"rbind"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		return specs.Mount{Destination: m.Target, Type: "bind", Source: m.Source, Options: append(opts, m.Options...)}
	}
}

// withDefaultEnv adds PATH and HOME when the image and step set none, as
// Docker does.
func withDefaultEnv(env []string, ident users.Identity) []string {
	out := append([]string(nil), env...)
	has := func(key string) bool {
		for _, e := range out {
			if k, _, _ := strings.Cut(e, "="); k == key {
				return true
			}
		}
		return false
	}
	if !has("PATH") {
		out = append(out, "PATH="+DefaultPath)
	}
	if !has("HOME") {
		home := ident.Home
		if home == "" {
			home = "/"
			if ident.UID == 0 {
				home = "/root"
			}
		}
		out = append(out, "HOME="+home)
	}
	return out
}

// rlimits is the default RLIMIT_NOFILE with the step's ulimits applied over it.
func rlimits(ulimits []Ulimit) []specs.POSIXRlimit {
	// Docker's soft limit; a higher one makes programs that close every possible fd crawl.
	out := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: min(1024, nofileHard()), Hard: nofileHard()}}
	for _, u := range ulimits {
		r := specs.POSIXRlimit{Type: "RLIMIT_" + strings.ToUpper(u.Name), Soft: uint64(u.Soft), Hard: uint64(u.Hard)}
		if r.Type == out[0].Type {
			out[0] = r
			continue
		}
		out = append(out, r)
	}
	return out
}

// shmSize is the /dev/shm tmpfs size option: Docker's 64 MiB unless --shm-size says otherwise.
func shmSize(bytes int64) string {
	if bytes <= 0 {
		return "size=65536k"
	}
	return "size=" + strconv.FormatInt(bytes, 10)
}

// nofileHard is the RLIMIT_NOFILE hard limit for the container. The runtime
// applies rlimits after dropping CAP_SYS_RESOURCE, so the limit cannot exceed
// the one strata itself runs with, nor fs.nr_open.
func nofileHard() uint64 {
	const want = 524288
	limit := uint64(want)
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Max < limit {
		limit = rl.Max
	}
	if data, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil && n < limit {
			limit = n
		}
	}
	return limit
}

// writeHosts writes the /etc/hosts BuildKit gives every RUN (executor/oci.initHostsFile), in
// every network mode: localhost and the container hostname, nothing from the host, so a step
// that reads it produces the same file on every machine; --add-host entries follow.
func writeHosts(bundle, hostname string, extra []Host) (string, error) {
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", hostname)
	for _, h := range extra {
		hosts += fmt.Sprintf("%s\t%s\n", h.IP, h.Name) // BuildKit's format
	}
	p := filepath.Join(bundle, "hosts")
	if err := os.WriteFile(p, []byte(hosts), 0o644); err != nil {
		return "", fmt.Errorf("write hosts file: %w", err)
	}
	return p, nil
}

func copyHostFile(bundle, hostPath, fallback string) (string, error) {
	data, err := os.ReadFile(hostPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", hostPath, err)
	}
	if err != nil {
		data = []byte(fallback)
	}
	p := filepath.Join(bundle, filepath.Base(hostPath))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return "", fmt.Errorf("write %s copy: %w", hostPath, err)
	}
	return p, nil
}
