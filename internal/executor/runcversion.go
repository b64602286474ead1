package executor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// RuncCheckEnv controls the runtime version check: "0" skips it, "strict"
// also refuses the escapes strata's spec is not exposed to (see runcEscapes).
const RuncCheckEnv = "STRATA_RUNC_CHECK"

// runcVersion is a runc release as `runc --version` names it.
type runcVersion struct {
	major, minor, patch int
	rc                  int // release candidate number; 0 for a release
}

func (v runcVersion) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch)
	if v.rc > 0 {
		s += fmt.Sprintf("-rc.%d", v.rc)
	}
	return s
}

func (v runcVersion) less(w runcVersion) bool {
	if v.major != w.major {
		return v.major < w.major
	}
	if v.minor != w.minor {
		return v.minor < w.minor
	}
	if v.patch != w.patch {
		return v.patch < w.patch
	}
	// A release sorts after all of its release candidates.
	return v.rc != 0 && (w.rc == 0 || v.rc < w.rc)
}

func (v runcVersion) sameBranch(w runcVersion) bool {
	return v.major == w.major && v.minor == w.minor
}

// runcEscape is a runc bug that lets a container reach the host.
type runcEscape struct {
	cve string
	// introduced is the first affected release; the zero value means every
	// release before the fix.
	introduced runcVersion
	// fixed holds the first fixed release of each branch that got a fix,
	// oldest first. A release of an older branch without an entry is
	// affected; one newer than the last entry is fixed.
	fixed []runcVersion
	// debianFixed are Debian package versions (the "commit:" line of a
	// Debian-built runc) that carry the fix under an older upstream version:
	// a prefix and the lowest +debNNuN security revision with the fix.
	debianFixed []debianFix
	// strictOnly escapes are refused only under STRATA_RUNC_CHECK=strict:
	// strata's runtime spec does not give a build what the exploit needs,
	// and the only runc Debian 12 ships has no fix, so refusing them by
	// default would refuse every RUN step there.
	strictOnly bool
}

type debianFix struct {
	prefix string // e.g. "1.1.5+ds1-1+deb12u"
	minRev int    // e.g. 1 for 1.1.5+ds1-1+deb12u1
}

func rv(major, minor, patch, rc int) runcVersion { return runcVersion{major, minor, patch, rc} }

// runcEscapes lists runc's known container escapes, newest first, so the
// message names the one a given runc is refused for first. Sources: the runc
// security advisories (GHSA-xr7r-f8xq-vfvv, GHSA-9493-h29p-rfm2,
// GHSA-qw9x-cqr3-wc7r, GHSA-cgrx-mc8f-2prm) and Debian's runc changelog.
//
// The November 2025 escapes are strictOnly because strata's spec lacks their
// preconditions: CVE-2025-52565 needs a console (RUN steps never get a
// terminal); CVE-2025-52881 redirects runc's writes of LSM labels and sysctls
// through procfs (strata sets no AppArmor or SELinux label and no sysctl);
// CVE-2025-31133 needs a container-controlled /dev/null when runc masks paths
// (/dev is a fresh tmpfs and buildSpec refuses RUN mounts that would cover
// /, /dev, /dev/null, /proc or /sys).
var runcEscapes = []runcEscape{
	{cve: "CVE-2025-31133", fixed: []runcVersion{rv(1, 2, 8, 0), rv(1, 3, 3, 0), rv(1, 4, 0, 3)}, strictOnly: true},
	{cve: "CVE-2025-52565", introduced: rv(1, 0, 0, 3), fixed: []runcVersion{rv(1, 2, 8, 0), rv(1, 3, 3, 0), rv(1, 4, 0, 3)}, strictOnly: true},
	{cve: "CVE-2025-52881", fixed: []runcVersion{rv(1, 2, 8, 0), rv(1, 3, 3, 0), rv(1, 4, 0, 3)}, strictOnly: true},
	{
		cve:        "CVE-2024-21626",
		introduced: rv(1, 0, 0, 93),
		fixed:      []runcVersion{rv(1, 1, 12, 0)},
		// bookworm-security, 2 Feb 2024 (Debian's runc changelog).
		debianFixed: []debianFix{{prefix: "1.1.5+ds1-1+deb12u", minRev: 1}},
	},
	{cve: "CVE-2021-30465", fixed: []runcVersion{rv(1, 0, 0, 95)}},
	{cve: "CVE-2019-5736", fixed: []runcVersion{rv(1, 0, 0, 7)}},
}

// affects tells whether a runc reporting version ver, built as Debian package
// debVersion (empty for others), has escape e.
func (e runcEscape) affects(ver runcVersion, debVersion string) bool {
	if ver.less(e.introduced) {
		return false
	}
	for _, d := range e.debianFixed {
		if rev, ok := strings.CutPrefix(debVersion, d.prefix); ok {
			if n, err := strconv.Atoi(rev); err == nil && n >= d.minRev {
				return false
			}
		}
	}
	if len(e.fixed) == 0 {
		return true
	}
	if last := e.fixed[len(e.fixed)-1]; !ver.less(last) {
		return false
	}
	for _, f := range e.fixed {
		if ver.sameBranch(f) {
			return ver.less(f)
		}
	}
	return true
}

// runcInfo is what `runc --version` says.
type runcInfo struct {
	reported string // the version as printed, e.g. "1.1.5+ds1"
	version  runcVersion
	commit   string // the "commit:" line: a git describe, or a distro package version
}

// parseRuncVersion reads `runc --version` output. ok is false when the output
// is not runc's (crun, youki, …), which the check leaves alone.
func parseRuncVersion(out []byte) (info runcInfo, ok bool, err error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, found := strings.CutPrefix(line, "runc version "); found && !ok {
			ok = true
			info.reported = strings.TrimSpace(rest)
		} else if rest, found := strings.CutPrefix(line, "commit: "); found {
			info.commit = strings.TrimSpace(rest)
		}
	}
	if !ok {
		return runcInfo{}, false, nil
	}
	info.version, err = parseRuncRelease(info.reported)
	return info, true, err
}

// parseRuncRelease parses "1.1.12", "1.0.0-rc93", "1.2.0-rc.1", and the
// same with build metadata ("+ds1", "+dev") or a distro revision
// ("-0ubuntu2~22.04.1"), which do not change the upstream release.
func parseRuncRelease(s string) (runcVersion, error) {
	core, _, _ := strings.Cut(s, "+")
	core, suffix, _ := strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return runcVersion{}, fmt.Errorf("unrecognised runc version %q", s)
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 {
			return runcVersion{}, fmt.Errorf("unrecognised runc version %q", s)
		}
		n[i] = x
	}
	ver := runcVersion{major: n[0], minor: n[1], patch: n[2]}
	if rc, found := strings.CutPrefix(suffix, "rc"); found {
		rc = strings.TrimPrefix(rc, ".")
		x, err := strconv.Atoi(rc)
		if err != nil || x <= 0 {
			return runcVersion{}, fmt.Errorf("unrecognised runc version %q", s)
		}
		ver.rc = x
	}
	return ver, nil
}

// debianPackageVersion returns the Debian package version a Debian-built runc
// puts on its "commit:" line (upstream builds put a git describe there).
func debianPackageVersion(info runcInfo) string {
	if strings.HasPrefix(info.commit, info.reported+"-") {
		return info.commit
	}
	return ""
}

// checkRuntimeVersion refuses a runc with a known container escape. bin is the
// runtime's path and out what `bin --version` printed; mode is the value of
// STRATA_RUNC_CHECK.
func checkRuntimeVersion(bin string, out []byte, mode string) error {
	if mode == "0" {
		return nil
	}
	info, ok, err := parseRuncVersion(out)
	if !ok {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: cannot tell whether it has known container escapes: %w; set %s=0 to skip this check", bin, err, RuncCheckEnv)
	}
	deb := debianPackageVersion(info)
	for _, e := range runcEscapes {
		if e.strictOnly && mode != "strict" {
			continue
		}
		if !e.affects(info.version, deb) {
			continue
		}
		found := info.reported
		if deb != "" {
			found = "package " + deb
		}
		return fmt.Errorf("refusing runc %s (%s): it has container escape %s; install runc 1.3.3 or newer (1.2.8+ on the 1.2 branch, or a distribution build with the fix), use --runtime crun, or set %s=0 to run anyway",
			found, bin, e.cve, RuncCheckEnv)
	}
	return nil
}

// CheckRuntimeVersion is checkRuntimeVersion with the mode taken from the
// environment; Check calls it with the output of the `--version` run it makes
// anyway, so runc is asked once per build.
func CheckRuntimeVersion(bin string, versionOutput []byte) error {
	return checkRuntimeVersion(bin, versionOutput, os.Getenv(RuncCheckEnv))
}
