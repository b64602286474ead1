package executor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runcOutput(version, commit string) []byte {
	return []byte("runc version " + version + "\ncommit: " + commit + "\nspec: 1.0.2-dev\ngo: go1.22.1\nlibseccomp: 2.5.4\n")
}

func TestParseRuncRelease(t *testing.T) {
	cases := map[string]runcVersion{
		"1.1.12":                  {1, 1, 12, 0},
		"1.0.0-rc93":              {1, 0, 0, 93},
		"1.0.0-rc92+dev":          {1, 0, 0, 92},
		"1.2.0-rc.1":              {1, 2, 0, 1},
		"1.4.0-rc.3":              {1, 4, 0, 3},
		"1.1.5+ds1":               {1, 1, 5, 0},
		"1.1.12-0ubuntu2~22.04.1": {1, 1, 12, 0},
		"1.3.3":                   {1, 3, 3, 0},
	}
	for in, want := range cases {
		got, err := parseRuncRelease(in)
		if err != nil || got != want {
			t.Errorf("parseRuncRelease(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1.1", "one.two.three", "1.1.x", "1.0.0-rc", "1.0.0-rc.-1", "1.1.1.1"} {
		if got, err := parseRuncRelease(bad); err == nil {
			t.Errorf("parseRuncRelease(%q) = %v, want an error", bad, got)
		}
	}
}

func TestRuncVersionOrder(t *testing.T) {
	ordered := []runcVersion{
		{1, 0, 0, 7}, {1, 0, 0, 93}, {1, 0, 0, 0}, {1, 1, 11, 0}, {1, 1, 12, 0},
		{1, 2, 0, 1}, {1, 2, 0, 0}, {1, 2, 8, 0}, {1, 4, 0, 2}, {1, 4, 0, 3}, {1, 4, 0, 0}, {2, 0, 0, 0},
	}
	for i := range ordered {
		for j := range ordered {
			if got, want := ordered[i].less(ordered[j]), i < j; got != want {
				t.Errorf("%v < %v = %v, want %v", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestCheckRuntimeVersion(t *testing.T) {
	cases := []struct {
		name, version, commit, mode string
		refusedFor                  string // "" = accepted
	}{
		// Debian 12's runc: the upstream version predates the 21626 fix,
		// the package carries it (bookworm-security, deb12u1).
		{"debian12-patched", "1.1.5+ds1", "1.1.5+ds1-1+deb12u1", "", ""},
		{"debian12-later-revision", "1.1.5+ds1", "1.1.5+ds1-1+deb12u3", "", ""},
		{"debian12-unpatched", "1.1.5+ds1", "1.1.5+ds1-1", "", "CVE-2024-21626"},
		// A build that merely claims a Debian-looking commit of another
		// upstream version gets no credit.
		{"debian-other-version", "1.1.4+ds1", "1.1.4+ds1-1+deb12u1", "", "CVE-2024-21626"},
		{"upstream-1.1.11", "1.1.11", "v1.1.11-0-g4bccb38c", "", "CVE-2024-21626"},
		{"upstream-1.1.12", "1.1.12", "v1.1.12-0-g51d5e946", "", ""},
		{"rc93", "1.0.0-rc93", "12644e61", "", "CVE-2024-21626"},
		{"rc92", "1.0.0-rc92", "ff819c7e", "", "CVE-2021-30465"},
		// Affected by several: the newest is named.
		{"rc6", "1.0.0-rc6", "ccb5efd3", "", "CVE-2021-30465"},
		{"upstream-1.2.7", "1.2.7", "v1.2.7-0-g1d8f6f2d", "", ""},
		{"upstream-1.3.3", "1.3.3", "v1.3.3-0-gd842d771", "", ""},
		{"ubuntu", "1.1.12-0ubuntu2~22.04.1", "1.1.12-0ubuntu2~22.04.1", "", ""},
		// Strict mode also refuses the November 2025 escapes.
		{"strict-debian12", "1.1.5+ds1", "1.1.5+ds1-1+deb12u1", "strict", "CVE-2025-31133"},
		{"strict-1.2.7", "1.2.7", "v1.2.7", "strict", "CVE-2025-31133"},
		{"strict-1.2.8", "1.2.8", "v1.2.8", "strict", ""},
		{"strict-1.3.2", "1.3.2", "v1.3.2", "strict", "CVE-2025-31133"},
		{"strict-1.3.3", "1.3.3", "v1.3.3", "strict", ""},
		{"strict-1.4.0-rc.2", "1.4.0-rc.2", "v1.4.0-rc.2", "strict", "CVE-2025-31133"},
		{"strict-1.4.0-rc.3", "1.4.0-rc.3", "v1.4.0-rc.3", "strict", ""},
		{"strict-1.4.1", "1.4.1", "v1.4.1", "strict", ""},
		{"strict-1.0.0-rc2", "1.0.0-rc2", "x", "strict", "CVE-2025-31133"},
		// Skipped entirely.
		{"skip", "1.1.11", "v1.1.11", "0", ""},
		{"skip-unparseable", "banana", "", "0", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkRuntimeVersion("/usr/sbin/runc", runcOutput(c.version, c.commit), c.mode)
			if c.refusedFor == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want refusal for %s", c.refusedFor)
			}
			msg := err.Error()
			for _, want := range []string{c.refusedFor, "/usr/sbin/runc", "STRATA_RUNC_CHECK=0", "1.3.3"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q: %s", want, msg)
				}
			}
			if !strings.Contains(msg, c.version) && !strings.Contains(msg, c.commit) {
				t.Errorf("message names neither version nor package: %s", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message is not one line: %q", msg)
			}
		})
	}
}

func TestCheckRuntimeVersionOtherRuntimes(t *testing.T) {
	for _, out := range []string{
		"crun version 1.8.1\ncommit: f8a096be060b22ccd3d5f3ebe44108517fbf6c30\nrundir: /run/crun\nspec: 1.0.0\n+SYSTEMD +SELINUX +APPARMOR +CAP +SECCOMP +EBPF +YAJL\n",
		"youki version 0.3.0\ncommit: 0.3.0-0-0a1b2c3\n",
		"",
	} {
		if err := checkRuntimeVersion("/usr/bin/x", []byte(out), ""); err != nil {
			t.Errorf("%q refused: %v", out, err)
		}
	}
	err := checkRuntimeVersion("/usr/bin/runc", []byte("runc version banana\n"), "")
	if err == nil || !strings.Contains(err.Error(), "STRATA_RUNC_CHECK=0") || !strings.Contains(err.Error(), "banana") {
		t.Errorf("unparseable runc version: %v", err)
	}
}

// TestInstalledRuncAccepted guards CI: the runc this machine has (Debian 12's
// in CI) must pass the default check, or every build would fail.
func TestInstalledRuncAccepted(t *testing.T) {
	bin, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", bin, err, out)
	}
	if err := checkRuntimeVersion(bin, out, ""); err != nil {
		t.Fatalf("installed runc refused: %v\n%s", err, out)
	}
	if _, ok, err := parseRuncVersion(out); !ok || err != nil {
		t.Fatalf("installed runc not recognised (%v, %v):\n%s", ok, err, out)
	}
}

// TestCheckRuntimeVersionFromEnv runs a fake runc through the exported entry
// point, as Check does.
func TestCheckRuntimeVersionFromEnv(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "runc")
	script := "#!/bin/sh\nprintf 'runc version 1.1.11\\ncommit: v1.1.11-0-g4bccb38c\\nspec: 1.0.2-dev\\n'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(fake, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(RuncCheckEnv, "")
	if err := CheckRuntimeVersion(fake, out); err == nil || !strings.Contains(err.Error(), "CVE-2024-21626") {
		t.Errorf("runc 1.1.11 accepted or wrong CVE: %v", err)
	}
	t.Setenv(RuncCheckEnv, "0")
	if err := CheckRuntimeVersion(fake, out); err != nil {
		t.Errorf("%s=0 did not skip the check: %v", RuncCheckEnv, err)
	}
}
