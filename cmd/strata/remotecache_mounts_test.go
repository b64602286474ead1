package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// A cache mount filled by runner A travels with the registry cache: runner D, with an empty store
// and a changed dependency manifest, finds it warm on its first RUN; D's export uploads only what
// D changed, and the next runner sees D's version (last successful writer wins).
func TestCacheMountsTravel(t *testing.T) {
	proxy, reg := cacheProxy(t)
	files := map[string]string{
		"Dockerfile": "FROM " + reg + "/busybox:latest\n" +
			"COPY deps.txt /deps.txt\n" +
			"RUN --mount=type=cache,id=deps,target=/cache sh -c '" +
			"if [ -f /cache/big.bin ]; then echo MOUNT-WARM; else echo MOUNT-COLD; head -c 20000000 /dev/urandom > /cache/big.bin; fi; " +
			"echo \"seen by $(cat /cache/last 2>/dev/null)\"; cat /deps.txt > /cache/last; ls /cache > /listing.txt'\n",
		"deps.txt": "runner-a\n",
	}
	cache := reg + "/mounts:cache"
	to := "type=registry,ref=" + cache + ",mode=max,mounts=true"
	a := newEnv(t)
	r := a.build("--cache-from", cache, "--cache-to", to, "-o", "type=oci,dest="+filepath.Join(a.dir, "a.tar"), a.project("app", files))
	if !r.has("MOUNT-COLD") {
		t.Fatalf("runner A: the mount should start empty\n%s", r.out)
	}

	d := newEnv(t)
	files["deps.txt"] = "runner-d\n"
	proxy.Reset()
	r = d.build("--cache-from", cache, "--cache-to", to, "-o", "type=local,dest="+filepath.Join(d.dir, "rootfs"), d.project("app", files))
	if !r.has("MOUNT-WARM") || !r.has("seen by runner-a") {
		t.Fatalf("runner D: the mount should hold runner A's content\n%s", r.out)
	}
	if got := readFile(t, filepath.Join(d.dir, "rootfs", "listing.txt")); !strings.Contains(got, "big.bin") {
		t.Errorf("runner D's RUN did not see big.bin: %q", got)
	}
	s := proxy.Stats()
	t.Logf("runner D moved %d bytes down, %d up", s.BlobBytesDown, s.BlobBytesUp)
	if s.BlobBytesDown < 20000000 {
		t.Errorf("runner D downloaded %d bytes; the mount alone is 20 MB", s.BlobBytesDown)
	}
	if s.BlobBytesUp > 256<<10 {
		t.Errorf("runner D uploaded %d bytes: only the changed file of the mount (and small layers) should move\n%+v", s.BlobBytesUp, s)
	}
	// The mount never enters the image.
	if _, err := filepath.Glob(filepath.Join(d.dir, "rootfs", "cache", "*")); err == nil {
		if m, _ := filepath.Glob(filepath.Join(d.dir, "rootfs", "cache", "big.bin")); len(m) > 0 {
			t.Errorf("cache mount content leaked into the image: %v", m)
		}
	}

	// Runner E: the RUN misses again (new deps) and sees D's write: last writer wins.
	e := newEnv(t)
	files["deps.txt"] = "runner-e\n"
	r = e.build("--cache-from", cache, "--cache-to", to, "-o", "type=oci,dest="+filepath.Join(e.dir, "e.tar"), e.project("app", files))
	if !r.has("seen by runner-d") {
		t.Errorf("runner E should see runner D's version of the mount\n%s", r.out)
	}

	// A fully cached build (the RUN does not execute) keeps the mount in the cache it rewrites.
	f := newEnv(t)
	f.build("--cache-from", cache, "--cache-to", to, "-o", "type=oci,dest="+filepath.Join(f.dir, "f.tar"), f.project("app", files))
	g := newEnv(t)
	files["deps.txt"] = "runner-g\n"
	r = g.build("--cache-from", cache, "-o", "type=oci,dest="+filepath.Join(g.dir, "g.tar"), g.project("app", files))
	if !r.has("seen by runner-e") {
		t.Errorf("after a fully cached export the mount should still be runner E's\n%s", r.out)
	}
}
