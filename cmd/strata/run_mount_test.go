package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func randomToken(t *testing.T, prefix string) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// layersContain reports which layers (by index) hold s anywhere in their uncompressed tar.
func (o *ociResult) layersContain(s string) []int {
	var hits []int
	for i, raw := range o.layerRaw {
		if bytes.Contains(raw, []byte(s)) {
			hits = append(hits, i)
		}
	}
	return hits
}

// filesContaining walks dir and lists regular files whose bytes contain s.
func filesContaining(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(s)) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestRunCacheMountPersistsAndStaysOutOfLayers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok1, tok2 := randomToken(t, "cache-one-"), randomToken(t, "cache-two-")
	ctx1 := e.project("cache1", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"RUN --mount=type=cache,target=/var/cache/app,id=appcache echo " + tok1 + " > /var/cache/app/seed && echo built > /built1\n"})
	o1, _ := e.buildOCI("cache1", ctx1)

	ctx2 := e.project("cache2", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"RUN --mount=type=cache,target=/var/cache/app,id=appcache sha256sum /var/cache/app/seed | cut -d' ' -f1 > /seen && echo " + tok2 + " >> /var/cache/app/seed\n" +
		"USER app\n" +
		"RUN --mount=type=cache,target=/owned,id=owned,uid=1000,gid=1000,mode=0700 touch /owned/x && stat -c '%a %u %g' /owned > /tmp/owned-stat\n"})
	o2, _ := e.buildOCI("cache2", ctx2)
	rootfs := o2.unpack(t)
	// The step records a hash, so the tokens themselves appear in no layer unless the cache leaks.
	if got := fileAt(t, rootfs, "seen"); got != sha256hex(tok1+"\n")+"\n" {
		t.Errorf("second build saw %q in the cache mount, want the hash of what the first wrote (%q)", got, tok1)
	}
	if got := fileAt(t, rootfs, "tmp/owned-stat"); got != "700 1000 1000\n" {
		t.Errorf("cache mount with uid/gid/mode: %q, want 700 1000 1000", got)
	}

	// --no-cache re-runs the step, and it sees both earlier writes.
	o3, _ := e.buildOCI("cache3", "--no-cache", ctx2)
	rootfs3 := o3.unpack(t)
	if got := fileAt(t, rootfs3, "seen"); got != sha256hex(tok1+"\n"+tok2+"\n")+"\n" {
		t.Errorf("--no-cache rebuild saw %q, want both tokens", got)
	}

	for _, o := range []*ociResult{o1, o2, o3} {
		for _, tok := range []string{tok1, tok2} {
			if hits := o.layersContain(tok); len(hits) > 0 {
				t.Errorf("cache mount content %s is in layers %v", tok, hits)
			}
		}
		for _, l := range o.layers {
			for name := range l {
				if strings.HasPrefix(name, "var/cache/app/") || strings.HasPrefix(name, "owned/") {
					t.Errorf("layer has %s, inside a cache mount", name)
				}
			}
		}
	}
}

func TestRunCacheMountLockedSerialisesBuilds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Warm the store with the base image so both builds reach the RUN at once.
	e.build(e.project("warm", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN true\n"}))

	step := func(name string) string {
		return "FROM {{BASE}}\n" +
			"RUN --mount=type=cache,target=/c,id=locktest,sharing=locked " +
			"echo \"" + name + " start $(cut -d' ' -f1 /proc/uptime)\" >> /c/log && sleep 2 && " +
			"echo \"" + name + " end $(cut -d' ' -f1 /proc/uptime)\" >> /c/log\n"
	}
	ctxA := e.project("lockA", map[string]string{"Dockerfile": step("A")})
	ctxB := e.project("lockB", map[string]string{"Dockerfile": step("B")})
	var wg sync.WaitGroup
	res := make([]result, 2)
	start := time.Now()
	for i, ctx := range []string{ctxA, ctxB} {
		wg.Add(1)
		go func(i int, ctx string) {
			defer wg.Done()
			res[i] = e.run("build", "--progress=plain", ctx)
		}(i, ctx)
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("build %d: %v\n%s", i, r.err, r.out)
		}
	}
	if elapsed < 4*time.Second {
		t.Errorf("two locked 2 s steps took %v together, want ≥ 4 s", elapsed)
	}

	ctxR := e.project("lockRead", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"RUN --mount=type=cache,target=/c,id=locktest,sharing=locked cp /c/log /log\n"})
	o, _ := e.buildOCI("lockread", ctxR)
	log := fileAt(t, o.unpack(t), "log")
	spans := map[string][2]float64{}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("bad log line %q in\n%s", line, log)
		}
		v, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			t.Fatal(err)
		}
		s := spans[f[0]]
		if f[1] == "start" {
			s[0] = v
		} else {
			s[1] = v
		}
		spans[f[0]] = s
	}
	a, b := spans["A"], spans["B"]
	if a[1] == 0 || b[1] == 0 || len(spans) != 2 {
		t.Fatalf("log lacks both critical sections:\n%s", log)
	}
	if a[0] < b[1] && b[0] < a[1] {
		t.Errorf("critical sections overlap: A %v, B %v\n%s", a, b, log)
	}
}

func TestRunSecretMountNeverPersisted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secret := randomToken(t, "s3cr3t-")
	secretFile := filepath.Join(e.dir, "tok.txt")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha256hex(secret) + "\n"

	ctx := e.project("secret", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /hash\n" +
		"RUN --mount=type=secret,id=tok,env=TOKVAL printf %s \"$TOKVAL\" | sha256sum | cut -d' ' -f1 > /hash-env\n" +
		"RUN --mount=type=secret,id=tok,target=/custom/path,mode=0440,uid=1000 " +
		"sha256sum /custom/path | cut -d' ' -f1 > /hash-target && stat -c '%a %u' /custom/path > /stat-target\n" +
		"RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo skipped > /absent\n"})
	o, r := e.buildOCI("secret", "--secret", "id=tok,src="+secretFile, ctx)
	rootfs := o.unpack(t)
	for p, w := range map[string]string{"hash": want, "hash-env": want, "hash-target": want, "stat-target": "440 1000\n", "absent": "skipped\n"} {
		if got := fileAt(t, rootfs, p); got != w {
			t.Errorf("/%s = %q, want %q", p, got, w)
		}
	}
	if strings.Contains(r.out, secret) {
		t.Errorf("secret value in progress output")
	}
	if hits := o.layersContain(secret); len(hits) > 0 {
		t.Errorf("secret value in layers %v", hits)
	}
	if bytes.Contains(o.configRaw, []byte(secret)) {
		t.Errorf("secret value in the image config")
	}
	for _, l := range o.layers {
		for name := range l {
			if strings.HasPrefix(name, "run/secrets") || strings.HasPrefix(name, "custom") {
				t.Errorf("layer has secret mount point %s", name)
			}
		}
	}
	if hits := filesContaining(t, e.root, secret); len(hits) > 0 {
		t.Errorf("secret value in store files %v", hits)
	}
	if hits := filesContaining(t, o.dir, secret); len(hits) > 0 {
		t.Errorf("secret value in exported files %v", hits)
	}
	// Store layer blobs are compressed: check them uncompressed too.
	if hits := o.layersContain(secret); len(hits) > 0 {
		t.Errorf("secret in layers %v", hits)
	}

	// The key names the secret's id, never its value: another value is a cache hit.
	other := filepath.Join(e.dir, "other.txt")
	if err := os.WriteFile(other, []byte(randomToken(t, "other-")), 0o600); err != nil {
		t.Fatal(err)
	}
	r2 := e.build("--secret", "id=tok,src="+other, ctx)
	if m := missed(r2.out); len(m) != 0 {
		t.Errorf("changing the secret value re-ran %v", m)
	}
	if hits := filesContaining(t, e.root, secret); len(hits) > 0 {
		t.Errorf("secret value in store files after the second build %v", hits)
	}
}

func TestRunBindAndTmpfsMounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("bind", map[string]string{
		"data/input.txt": "ctx-input\n",
		"data/sub/x":     "x\n",
		"other.txt":      "other\n",
		"Dockerfile": "FROM {{BASE}} AS gen\n" +
			"RUN mkdir /out && echo generated > /out/gen.txt\n" +
			"FROM {{BASE}}\n" +
			"RUN --mount=type=bind,source=data,target=/mnt/ctx cat /mnt/ctx/input.txt /mnt/ctx/sub/x > /fromctx\n" +
			"RUN --mount=type=bind,from=gen,source=/out,target=/mnt/gen cat /mnt/gen/gen.txt > /fromstage\n" +
			"RUN --mount=type=bind,from=gen,source=/out/gen.txt,target=/single.txt cat /single.txt > /fromfile\n" +
			"RUN --mount=type=bind,source=data,target=/mnt/rw,rw echo scribble > /mnt/rw/new.txt && echo changed > /mnt/rw/input.txt && cat /mnt/rw/input.txt > /rwseen\n" +
			"RUN --mount=type=bind,source=data,target=/mnt/ro if touch /mnt/ro/nope 2>/dev/null; then echo writable; else echo readonly; fi > /rocheck\n" +
			"RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/x && awk '$2==\"/scratch\"{print $3}' /proc/mounts > /tmpfstype\n" +
			"RUN --mount=type=bind,target=/mnt/whole cat /mnt/whole/other.txt > /whole\n",
	})
	o, _ := e.buildOCI("bind", ctx)
	rootfs := o.unpack(t)
	for p, w := range map[string]string{
		"fromctx": "ctx-input\nx\n", "fromstage": "generated\n", "fromfile": "generated\n",
		"rwseen": "changed\n", "rocheck": "readonly\n", "tmpfstype": "tmpfs\n", "whole": "other\n",
	} {
		if got := fileAt(t, rootfs, p); got != w {
			t.Errorf("/%s = %q, want %q", p, got, w)
		}
	}
	if got := readFile(t, filepath.Join(ctx, "data/input.txt")); got != "ctx-input\n" {
		t.Errorf("rw bind wrote through to the context: %q", got)
	}
	if _, err := os.Stat(filepath.Join(ctx, "data/new.txt")); err == nil {
		t.Errorf("rw bind created a file in the context")
	}
	for _, l := range o.layers {
		for name := range l {
			if strings.HasPrefix(name, "mnt/") || strings.HasPrefix(name, "scratch/") || name == "single.txt" {
				t.Errorf("layer has %s, inside a mount", name)
			}
		}
	}
	for _, p := range []string{"mnt", "scratch", "single.txt"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err == nil {
			t.Errorf("mount point /%s left in the image", p)
		}
	}

	// The key covers what a bind mount shows: an unrelated context file re-runs only the step that
	// mounts the whole context; a file under data/ re-runs the steps mounting data.
	if err := os.WriteFile(filepath.Join(ctx, "other.txt"), []byte("other2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.build(ctx)
	for name, s := range stepStates(r.out) {
		switch {
		case strings.Contains(name, "target=/mnt/whole"):
			if s != "MISS" {
				t.Errorf("%s: %s after editing other.txt, want MISS", name, s)
			}
		case strings.Contains(name, "RUN --mount"):
			if s != "CACHED" {
				t.Errorf("%s: %s after editing other.txt, want CACHED\n%s", name, s, r.out)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(ctx, "data/sub/x"), []byte("y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o2, r2 := e.buildOCI("bind2", ctx)
	for name, s := range stepStates(r2.out) {
		if strings.Contains(name, "target=/mnt/ctx") && s != "MISS" {
			t.Errorf("%s: %s after editing data/sub/x, want MISS", name, s)
		}
	}
	if got := fileAt(t, o2.unpack(t), "fromctx"); got != "ctx-input\ny\n" {
		t.Errorf("/fromctx after edit = %q", got)
	}
}
