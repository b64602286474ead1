package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagSecretSources: --secret resolves as buildx's does: id alone reads the variable named
// like it when set, else the file named like it (relative to the working directory);
// type=env,src=VAR reads VAR; an unset env= variable is a secret not given, which a RUN without
// required=true does without.
func TestFlagSecretSources(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("secrets", map[string]string{"Dockerfile": `FROM {{BASE}}
RUN --mount=type=secret,id=TOKEN,target=/s/a --mount=type=secret,id=tokfile,target=/s/b --mount=type=secret,id=viaenv,target=/s/c --mount=type=secret,id=missing,target=/s/d \
    { [ "$(cat /s/a)" = from-env ] && echo a-ok; [ "$(cat /s/b)" = from-file ] && echo b-ok; [ "$(cat /s/c)" = typed-env ] && echo c-ok; [ -e /s/d ] || echo d-absent; } > /out
`})
	work := filepath.Join(e.dir, "work")
	os.MkdirAll(work, 0o755)
	os.WriteFile(filepath.Join(work, "tokfile"), []byte("from-file"), 0o600)
	tarPath := filepath.Join(e.dir, "secrets.oci.tar")
	cmd := exec.Command(strataBin, "--root", e.root, "build", "--progress=plain", "-t", "strata-test/secrets:v1", "-o", "type=oci,dest="+tarPath,
		"--secret", "id=TOKEN", "--secret", "id=tokfile", "--secret", "type=env,id=viaenv,src=SECRET_SRC_VAR", "--secret", "id=missing,env=STRATA_UNSET_VAR", ctx)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "TOKEN=from-env", "SECRET_SRC_VAR=typed-env")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	rootfs := readOCI(t, tarPath, filepath.Join(e.dir, "secrets.oci"), "v1").unpack(t)
	if got := fileAt(t, rootfs, "out"); got != "a-ok\nb-ok\nc-ok\nd-absent\n" {
		t.Errorf("secrets seen by RUN:\n%s\n%s", got, out.String())
	}

	for spec, want := range map[string]string{
		"id=x,bogus=1":   `unknown key "bogus"`,
		"id=x,type=ssh":  "use file or env",
		"src=/etc/hosts": "missing id=",
		"id=nofile-here": "nofile-here",
	} {
		r := e.buildFail("--secret", spec, ctx)
		if !r.has(want) {
			t.Errorf("--secret %s: want %q in\n%s", spec, want, r.out)
		}
	}
	if r := e.buildFail("--secret", "id=TOKEN,env=STRATA_UNSET_VAR", e.project("secret-req", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN --mount=type=secret,id=TOKEN,required=true true\n"})); !strings.Contains(r.out, "required") {
		t.Errorf("a required secret from an unset variable:\n%s", r.out)
	}
}

// A required secret is checked when its step runs, as BuildKit does: once the step is cached, a
// build without --secret succeeds; with --no-cache it fails, naming the line and the flag.
func TestSecretRequiredOnlyWhenTheStepRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("secret-cached", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN --mount=type=secret,id=tok,required=true cat /run/secrets/tok > /dev/null && echo used > /used\n", "tok": "s3cret"})
	e.build("--secret", "id=tok,src="+filepath.Join(ctx, "tok"), ctx)
	r := e.build(ctx)
	if !strings.Contains(r.out, "CACHED") {
		t.Errorf("second build without --secret did not hit:\n%s", r.out)
	}
	r = e.buildFail("--no-cache", ctx)
	if !r.has("Dockerfile:2") || !r.has("--secret id=tok") {
		t.Errorf("a required secret missing when the step runs:\n%s", r.out)
	}
}
