package executor

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// In a user namespace /sys is the host's, bound read-only, unless the step has its own network
// namespace (then sysfs can be mounted and shows it); cgroups are neither mounted nor managed.
func TestToRootless(t *testing.T) {
	for _, ownNet := range []bool{false, true} {
		s := &specs.Spec{
			Mounts: []specs.Mount{
				{Destination: "/proc", Type: "proc"},
				{Destination: "/sys", Type: "sysfs", Source: "sysfs"},
				{Destination: "/sys/fs/cgroup", Type: "cgroup"},
			},
			Linux: &specs.Linux{Resources: &specs.LinuxResources{}, CgroupsPath: "strata-1-x"},
		}
		if ownNet {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}
		}
		toRootless(s)
		if len(s.Mounts) != 2 || s.Mounts[1].Destination != "/sys" {
			t.Fatalf("ownNet=%v: mounts %+v, want /proc and /sys only", ownNet, s.Mounts)
		}
		wantType := "bind"
		if ownNet {
			wantType = "sysfs"
		}
		if s.Mounts[1].Type != wantType {
			t.Errorf("ownNet=%v: /sys is %q, want %q", ownNet, s.Mounts[1].Type, wantType)
		}
		if s.Linux.Resources != nil || s.Linux.CgroupsPath != "" {
			t.Errorf("ownNet=%v: cgroups still asked for: %+v %q", ownNet, s.Linux.Resources, s.Linux.CgroupsPath)
		}
	}
}

// Without a process sandbox the container keeps every namespace but the pid one and binds /proc.
func TestShareProcesses(t *testing.T) {
	s := &specs.Spec{
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, {Destination: "/dev", Type: "tmpfs"}},
		Linux:  &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}, {Type: specs.UTSNamespace}}},
	}
	shareProcesses(s)
	if len(s.Linux.Namespaces) != 2 || s.Linux.Namespaces[0].Type != specs.MountNamespace || s.Linux.Namespaces[1].Type != specs.UTSNamespace {
		t.Errorf("namespaces %+v, want mount and uts", s.Linux.Namespaces)
	}
	if m := s.Mounts[0]; m.Type != "bind" || m.Source != "/proc" {
		t.Errorf("/proc mount %+v, want a bind of /proc", m)
	}
}
