// Package binfmt decides whether a RUN step of a foreign platform can execute: the kernel must
// hand that platform's binaries to a QEMU user-mode emulator registered in binfmt_misc.
package binfmt

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/platform"
)

// Dir is where the kernel exposes binfmt_misc handlers.
const Dir = "/proc/sys/fs/binfmt_misc"

// EnvDir, when set, replaces Dir (tests point the check at a directory without the handler).
const EnvDir = "STRATA_BINFMT_DIR"

// qemuArch maps GOARCH-style architectures to QEMU's names, which name the handlers
// (qemu-aarch64) that Debian's qemu-user-static registers.
var qemuArch = map[string]string{
	"arm64":    "aarch64",
	"arm":      "arm",
	"riscv64":  "riscv64",
	"ppc64le":  "ppc64le",
	"ppc64":    "ppc64",
	"s390x":    "s390x",
	"386":      "i386",
	"amd64":    "x86_64",
	"mips64le": "mips64el",
	"mips64":   "mips64",
	"mipsle":   "mipsel",
	"mips":     "mips",
	"loong64":  "loongarch64",
}

// Handler is the binfmt_misc entry name for p's emulator ("qemu-aarch64").
func Handler(p ocispec.Platform) (string, bool) {
	a, ok := qemuArch[platform.Normalize(p).Architecture]
	if !ok {
		return "", false
	}
	return "qemu-" + a, true
}

// Check returns nil when a RUN for p can execute: natively, or through an enabled binfmt_misc
// handler with the F flag (the interpreter is opened when registered, so it works inside the
// container's root filesystem, which has no qemu). It mounts binfmt_misc when nothing is
// mounted at Dir. The error names the platform and what to install.
func Check(p ocispec.Platform) error {
	if platform.Native(p) {
		return nil
	}
	name := platform.Format(p)
	if p.OS != "linux" {
		return fmt.Errorf("cannot run %s binaries: only linux platforms can run, natively or under emulation", name)
	}
	h, ok := Handler(p)
	if !ok {
		return fmt.Errorf("cannot run %s binaries: strata knows no QEMU emulator for architecture %s", name, p.Architecture)
	}
	dir := os.Getenv(EnvDir)
	if dir == "" {
		dir = Dir
		if err := ensureMounted(dir); err != nil {
			return fmt.Errorf("cannot run %s binaries: binfmt_misc is not mounted and mounting it failed (%v): run `mount -t binfmt_misc binfmt_misc %s`", name, err, dir)
		}
	}
	enabled, flags, err := readHandler(filepath.Join(dir, h))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot run %s binaries: no QEMU emulator is registered in binfmt_misc (%s missing): install it with `apt-get install qemu-user-static binfmt-support` (or `update-binfmts --enable %s` if it is installed)", name, filepath.Join(dir, h), h)
	}
	if err != nil {
		return fmt.Errorf("cannot run %s binaries: %w", name, err)
	}
	if !enabled {
		return fmt.Errorf("cannot run %s binaries: the binfmt_misc handler %s is disabled: enable it with `update-binfmts --enable %s` (package qemu-user-static)", name, h, h)
	}
	if !strings.Contains(flags, "F") {
		return fmt.Errorf("cannot run %s binaries: the binfmt_misc handler %s lacks the F flag, so containers cannot reach its interpreter: install Debian's `qemu-user-static`, which registers it with F", name, h)
	}
	return nil
}

func readHandler(path string) (enabled bool, flags string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "enabled":
			enabled = true
		case strings.HasPrefix(line, "flags:"):
			flags = strings.TrimSpace(strings.TrimPrefix(line, "flags:"))
		}
	}
	return enabled, flags, sc.Err()
}

// ensureMounted mounts binfmt_misc at dir when its register file is absent.
func ensureMounted(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "register")); err == nil {
		return nil
	}
	return unix.Mount("binfmt_misc", dir, "binfmt_misc", 0, "")
}
