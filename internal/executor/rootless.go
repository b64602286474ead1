package executor

import (
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/strata-build/strata/internal/userns"
)

// rootless reports whether containers run inside a user namespace strata did not get from the
// host's root: a rootless build, or strata as root of an unprivileged container.
func rootless() bool { return userns.Running() }

// toRootless adapts s the way `runc spec --rootless` and rootless BuildKit do. Owning only a user
// namespace, the runtime cannot mount sysfs while it shares the host's network namespace, so /sys
// is then a read-only bind of the host's (a step with its own, --network=none, keeps a sysfs of
// its own network namespace, as a root build has); it cannot create or limit cgroups unless they were delegated,
// so the spec asks for none (no device cgroup either: device nodes cannot be created in a user
// namespace anyway, runc bind-mounts the few the spec lists). The container has no resource
// limits, as a root build sets none either.
func toRootless(s *specs.Spec) {
	ownNet := false
	for _, ns := range s.Linux.Namespaces {
		ownNet = ownNet || ns.Type == specs.NetworkNamespace
	}
	mounts := s.Mounts[:0]
	for _, m := range s.Mounts {
		switch filepath.Clean(m.Destination) {
		case "/sys":
			if ownNet {
				break
			}
			m = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		case "/sys/fs/cgroup":
			continue
		}
		mounts = append(mounts, m)
	}
	s.Mounts = mounts
	s.Linux.Resources = nil
	s.Linux.CgroupsPath = ""
}

// rootlessFlags are the runtime's global flags for a container in a user namespace: runc left to
// "auto" picks its full cgroup manager when it is uid 0 on cgroup v2 and then fails to create the
// cgroup; --rootless=true lets it run without one. crun detects this by itself.
func (c Config) rootlessFlags() []string {
	if !rootless() || filepath.Base(c.runtimeName()) != "runc" {
		return nil
	}
	return []string{"--rootless=true"}
}

// shareProcesses drops the container's pid namespace and binds the caller's /proc instead of
// mounting a new one, which a user namespace may not do where /proc is partly masked (an
// unprivileged container). The step then sees, and may signal, every process of that pid
// namespace, strata's included; the masked paths are still masked. Processes it leaves behind
// die with strata's own pid namespace at the end of the build.
func shareProcesses(s *specs.Spec) {
	nss := s.Linux.Namespaces[:0]
	for _, ns := range s.Linux.Namespaces {
		if ns.Type != specs.PIDNamespace {
			nss = append(nss, ns)
		}
	}
	s.Linux.Namespaces = nss
	for i, m := range s.Mounts {
		if m.Destination == "/proc" {
			s.Mounts[i] = specs.Mount{Destination: "/proc", Type: "bind", Source: "/proc", Options: []string{"rbind", "nosuid", "noexec", "nodev"}}
		}
	}
}
