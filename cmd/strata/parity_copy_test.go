package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/binfmt"
	"github.com/strata-build/strata/internal/testenv"
)

// The parity tests build a Dockerfile modelled on one of BuildKit v0.33.1's frontend integration
// tests (named on each test) and check the exported filesystem against what BuildKit produces.

// parityOwnerMode describes path p under root as "uid:gid mode" (mode in octal, with the setuid,
// setgid and sticky bits).
func parityOwnerMode(t *testing.T, root, p string) string {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, p))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d %04o", st.Uid, st.Gid, st.Mode&0o7777)
}

// parityExpect checks each path's "uid:gid mode" (or only "uid:gid" when the expectation has no
// mode) after a build exported to out.
func parityExpect(t *testing.T, out string, want map[string]string) {
	t.Helper()
	for p, w := range want {
		got := parityOwnerMode(t, out, p)
		if !strings.Contains(w, " ") {
			got, _, _ = strings.Cut(got, " ")
		}
		if got != w {
			t.Errorf("%s: %s, want %s", p, got, w)
		}
	}
}

// passwdSetup adds a user whose primary group differs from its uid, and a group, so owners show
// which passwd/group field was used.
const passwdSetup = `RUN echo 'svc:x:1500:1600::/:/bin/sh' >> /etc/passwd && echo 'grp:x:1700:' >> /etc/group
`

// Follows testWorkdirUser and testWorkdirExists (dockerfile_workdir_test.go): directories WORKDIR
// creates belong to USER, resolved like --chown; existing ones keep their owner and mode.
func TestParityWorkdirOwner(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("workdir", map[string]string{
		"Dockerfile": "FROM {{BASE}}\n" + passwdSetup + `RUN mkdir -m 0700 /exists && chown 7:8 /exists
USER svc
WORKDIR /exists/a/b
USER 1234
WORKDIR /num/x
USER app:grp
WORKDIR rel
USER nosuchuser
WORKDIR /ghost
`,
	})
	out := parityRootfs(t, e, ctx)
	parityExpect(t, out, map[string]string{
		"exists":     "7:8 0700",
		"exists/a":   "1500:1600 0755",
		"exists/a/b": "1500:1600 0755",
		"num":        "1234:1234 0755",
		"num/x":      "1234:1234 0755",
		"num/x/rel":  "1000:1700 0755",
		"ghost":      "0:0 0755", // BuildKit falls back to root for an unknown user
	})
}

// Follows testCopyChown and testCopyChownCreateDest (dockerfile_copy_test.go) and BuildKit's
// owner resolution for file operations (solver/llbsolver/ops/user_linux.go readUser): a lone
// numeric user gets the same number as group, a name its primary group, and unknown names fall
// back to root (user) or to the user's group (group) instead of failing.
func TestParityCopyChown(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("chown", map[string]string{
		"Dockerfile": "FROM {{BASE}}\n" + passwdSetup + `COPY --chown=123 f /num
COPY --chown=svc f /name
COPY --chown=nosuchuser f /nouser
COPY --chown=123:nosuchgroup f /nogroup
COPY --chown=svc:grp f /both
COPY --chown=svc:nosuchgroup f /namenogroup
COPY --chown=nosuchuser:grp f /nousergroup
COPY --chown=1000 d /d/
`,
		"f":     "f\n",
		"d/sub": "s\n",
	})
	out := parityRootfs(t, e, ctx)
	parityExpect(t, out, map[string]string{
		"num":         "123:123",
		"name":        "1500:1600",
		"nouser":      "0:0",
		"nogroup":     "123:123",
		"both":        "1500:1700",
		"namenogroup": "1500:1600",
		"nousergroup": "0:1700",
		"d":           "1000:1000",
		"d/sub":       "1000:1000",
	})
}

// Follows testChmodNonOctal (dockerfile_copy_test.go): symbolic modes edit each copied entry's
// own mode, "X" adding execute to directories and to files some class can already execute.
func TestParityCopyChmodSymbolic(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("chmod", map[string]string{
		"Dockerfile": `FROM {{BASE}}
COPY --chmod=u=rw,g=r,o=r f /f1
COPY --chmod=go-w f /f2
ADD --chmod=a+X f x.sh d /ax/
COPY --chmod=u+rw,g+r,o-x,o+w d /d2/
COPY --chmod=0750 f /octal
COPY --chmod=a+X <<EOF /heredoc
hello
EOF
`,
		"f":         "f\n",
		"x.sh":      "#!/bin/sh\n",
		"d/sub/in":  "in\n",
		"d/private": "p\n",
	})
	for p, m := range map[string]fs.FileMode{"f": 0o666, "x.sh": 0o744, "d/sub": 0o124, "d/private": 0o600} {
		if err := os.Chmod(filepath.Join(ctx, p), m); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(e.dir, "out")
	e.build("-o", "type=local,dest="+out, ctx)
	parityExpect(t, out, map[string]string{
		"f1":         "0:0 0644",
		"f2":         "0:0 0644",
		"ax/f":       "0:0 0666",
		"ax/x.sh":    "0:0 0755",
		"ax/sub":     "0:0 0135",
		"ax/sub/in":  "0:0 0644",
		"ax/private": "0:0 0600",
		"d2/sub":     "0:0 0766",
		"d2/private": "0:0 0642",
		"d2/sub/in":  "0:0 0646",
		"octal":      "0:0 0750",
		"heredoc":    "0:0 0644",
	})
}

// Follows testDuplicateStageName (dockerfile_check_test.go) and dockerfile2llb's stage lookup:
// a duplicate stage name is only a warning; FROM sees the latest stage of that name defined
// before it, COPY --from the last one in the file. A stage for another platform that the target
// never uses does not fail the build.
func TestParityDuplicateAndUnusedStages(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("stages", map[string]string{
		"Dockerfile": `FROM {{BASE}} AS b
RUN echo one > /which
FROM {{BASE}} AS b
RUN echo two > /which
FROM b AS c
FROM {{BASE}} AS b
RUN echo three > /which
FROM --platform=linux/arm64 {{BASE}} AS tools
RUN echo never
FROM scratch
COPY --from=c /which /c
COPY --from=b /which /b
`,
	})
	out := filepath.Join(e.dir, "out")
	e.build("-o", "type=local,dest="+out, ctx)
	if got := readFile(t, filepath.Join(out, "c")); got != "two\n" {
		t.Errorf("FROM b after the second b: %q, want two", got)
	}
	if got := readFile(t, filepath.Join(out, "b")); got != "three\n" {
		t.Errorf("COPY --from=b: %q, want three (the last b)", got)
	}
	// The arm64 stage is resolved only when the target needs it; the fixture is amd64 only, which
	// BuildKit uses with a warning (and its amd64 busybox then runs natively).
	r := e.run("build", "--progress=plain", "--target", "tools", ctx)
	if !r.has(`Dockerfile:8: InvalidBaseImagePlatform: Base image ` + baseRef + ` was pulled with platform "linux/amd64", expected "linux/arm64"`) {
		t.Errorf("--target tools: no InvalidBaseImagePlatform warning\n%s", r.out)
	}
	if err := binfmt.Check(arm64); err == nil && r.err != nil {
		t.Errorf("--target tools failed: %v\n%s", r.err, r.out)
	} else if err != nil && (r.err == nil || !r.has("qemu-user-static")) {
		t.Errorf("--target tools without an arm64 emulator: want the qemu-user-static error\n%s", r.out)
	}
}

// The owner of a new WORKDIR and the result of a symbolic --chmod depend on USER and on the
// source's mode, so both must be in the cache key (invariant 1: no stale hit).
func TestParityCacheKeysOwnerAndMode(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("keys", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nWORKDIR /w\nCOPY --chmod=a+X x /x\n",
		"x":          "x\n",
	})
	e.build(ctx)
	// USER before WORKDIR changes who owns /w.
	df := filepath.Join(ctx, "Dockerfile")
	if err := os.WriteFile(df, []byte("FROM "+baseRef+"\nUSER app\nWORKDIR /w\nCOPY --chmod=a+X x /x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(ctx, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := parityRootfs(t, e, ctx)
	parityExpect(t, out, map[string]string{"w": "1000:1000", "x": "0:0 0755"})
}

// parityRootfs builds ctx as an OCI layout and returns its filesystem unpacked by umoci, with the
// owners the image records: a type=local export gives every file to the user running the build,
// as BuildKit's does, so it cannot show them.
func parityRootfs(t *testing.T, e *env, ctx string) string {
	t.Helper()
	testenv.RequireTools(t, "umoci")
	layout := filepath.Join(e.dir, fmt.Sprintf("oci-%d", time.Now().UnixNano()))
	e.build("-t", "parity:1", "-o", "type=oci,tar=false,dest="+layout, ctx)
	// raw: only the filesystem (a runtime config would need USER to resolve).
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("umoci", "raw", "unpack", "--image", layout+":1", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("umoci raw unpack: %v\n%s", err, out)
	}
	return rootfs
}
