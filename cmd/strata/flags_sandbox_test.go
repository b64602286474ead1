package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFlagSandbox: --add-host, --ulimit, --shm-size and BUILDKIT_SANDBOX_HOSTNAME reach every RUN
// step, stay out of the image, and are part of the step's key: the same Dockerfile built with
// them does not reuse the default build's record, and built again with them is cached.
func TestFlagSandbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("sandbox", map[string]string{"Dockerfile": `FROM {{BASE}}
RUN mkdir /probe && cp /etc/hosts /probe/hosts && hostname > /probe/hostname && ulimit -Sn > /probe/nofile-soft && ulimit -Hn > /probe/nofile-hard && df -k /dev/shm | tail -1 | awk '{print $2}' > /probe/shm-kb
`})
	o, _ := e.buildOCI("sandbox-default", ctx)
	def := o.unpack(t)
	if got := fileAt(t, def, "probe/hostname"); got != "buildkitsandbox\n" {
		t.Errorf("default hostname %q", got)
	}
	if got := fileAt(t, def, "probe/shm-kb"); got != "65536\n" {
		t.Errorf("default /dev/shm %q KiB, want 65536", got)
	}
	if got := fileAt(t, def, "probe/nofile-soft"); got != "1024\n" {
		t.Errorf("default nofile soft limit %q", got)
	}

	flags := []string{"--add-host", "db.internal:10.1.2.3", "--add-host", "gw=host-gateway", "--add-host", "v6:[fd00::1]",
		"--ulimit", "nofile=200:300", "--shm-size", "32m", "--build-arg", "BUILDKIT_SANDBOX_HOSTNAME=strata-box"}
	o, r := e.buildOCI("sandbox-set", append(flags, ctx)...)
	for name, st := range stepStates(r.out) {
		if strings.Contains(name, "RUN ") && st == "CACHED" {
			t.Errorf("sandbox flags reused the default sandbox's record for %s\n%s", name, r.out)
		}
	}
	if !r.has("RUN sandbox changed") {
		t.Errorf("miss reason does not name the sandbox\n%s", r.out)
	}
	set := o.unpack(t)
	hosts := fileAt(t, set, "probe/hosts")
	for _, want := range []string{"10.1.2.3\tdb.internal\n", "127.0.0.1\tgw\n", "fd00::1\tv6\n", "127.0.0.1\tlocalhost strata-box\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("/etc/hosts in RUN lacks %q:\n%s", want, hosts)
		}
	}
	for p, want := range map[string]string{"probe/hostname": "strata-box\n", "probe/nofile-soft": "200\n", "probe/nofile-hard": "300\n", "probe/shm-kb": "32768\n"} {
		if got := fileAt(t, set, p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	// The entries are the container's, not the image's.
	if data, err := os.ReadFile(filepath.Join(set, "etc/hosts")); err == nil && strings.Contains(string(data), "db.internal") {
		t.Errorf("--add-host landed in the image's /etc/hosts:\n%s", data)
	}

	_, r = e.buildOCI("sandbox-again", append(flags, ctx)...)
	if m := missed(r.out); len(m) > 0 {
		t.Errorf("same sandbox flags missed %v\n%s", m, r.out)
	}

	for _, bad := range [][]string{{"--add-host", "db"}, {"--add-host", "db:not-an-ip"}, {"--ulimit", "nofile=x"}, {"--ulimit", "nofile=300:200"}, {"--shm-size", "lots"}} {
		r := e.buildFail(append(bad, ctx)...)
		if !r.has(bad[0]) {
			t.Errorf("%v: error does not name the flag\n%s", bad, r.out)
		}
	}
}
