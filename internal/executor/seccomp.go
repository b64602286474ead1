package executor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The profile is Docker's default, taken from github.com/moby/profiles/seccomp
// at the version Docker 29 and BuildKit v0.33 vendor (v0.2.3), so a RUN step
// may call exactly the syscalls it may call under `docker build`. Which
// syscalls the profile allows depends on the bounding set (CAP_SYS_ADMIN
// unlocks mount, unshare, …) and on the kernel, never on the step, so it is
// computed once per process.
var defaultSeccomp = sync.OnceValues(func() (*specs.LinuxSeccomp, error) {
	if !seccompEnabled() {
		// As in BuildKit (containerd's seccomp.IsEnabled): a kernel built
		// without seccomp cannot enforce a profile, and runc would refuse
		// every step.
		return nil, nil
	}
	p, err := seccomp.GetDefaultProfile(&specs.Spec{
		Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: defaultCaps}},
	})
	if err != nil {
		return nil, fmt.Errorf("build default seccomp profile: %w", err)
	}
	return p, nil
})

// seccompEnabled tells whether the kernel supports seccomp: /proc/self/status
// has a Seccomp line only when it was built with CONFIG_SECCOMP.
func seccompEnabled() bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), []byte("Seccomp:")) {
			return true
		}
	}
	return false
}

// thermalThrottlePaths are the per-CPU thermal_throttle directories that
// containerd (and so BuildKit) masks since v2.1: they let a container both read
// and reset host CPU throttling counters. Only existing ones are listed, since
// runc masks a missing path by failing on some versions.
var thermalThrottlePaths = sync.OnceValue(func() []string {
	paths, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle")
	slices.Sort(paths)
	return paths
})

// containerMaskedPaths is the full masked list for a step: the fixed list plus
// the thermal_throttle directories of this host.
func containerMaskedPaths() []string {
	return append(slices.Clone(maskedPaths), thermalThrottlePaths()...)
}
