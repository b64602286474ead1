package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// One test per container-builder CVE of issue 10. Each aims its escape at a sentinel directory in
// a temp dir (never at a real system path), so a strata that were vulnerable would damage only the
// sentinel, and the test would see it. A build that refuses the hostile input is a pass as long as
// the sentinel is untouched; where the CVE is about resolving inside the right root, the test
// requires success and checks what the step saw.

// hostSentinel is a directory on the host holding a secret token, a subdirectory and a file
// that teardown code might be tricked into deleting.
type hostSentinel struct {
	dir, token string
	before     map[string]string
}

func newSentinel(t *testing.T) *hostSentinel {
	t.Helper()
	s := &hostSentinel{dir: t.TempDir(), token: randomToken(t, "host-secret-")}
	for p, body := range map[string]string{"token": s.token, "x/keep": "keep", "y/keep": "keep", "z/keep": "keep", "c/keep": "keep"} {
		full := filepath.Join(s.dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.before = dirState(t, s.dir)
	return s
}

// intact fails the test if anything under the sentinel dir was added, removed or changed.
func (s *hostSentinel) intact(t *testing.T) {
	t.Helper()
	after := dirState(t, s.dir)
	for p, v := range after {
		if s.before[p] != v {
			t.Errorf("host sentinel %s changed: was %q, now %q", p, s.before[p], v)
		}
	}
	for p := range s.before {
		if _, ok := after[p]; !ok {
			t.Errorf("host sentinel %s was removed", p)
		}
	}
}

func dirState(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("%v %d:%d nlink=%d", info.Mode(), st.Uid, st.Gid, st.Nlink)
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		if info.IsDir() {
			v = fmt.Sprintf("%v %d:%d", info.Mode(), st.Uid, st.Gid)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// buildLocal builds ctx into a fresh local directory and returns it with the result; a failed
// build returns "" and the result, for tests where refusing is a correct answer.
func (e *env) buildLocal(name string, args ...string) (string, result) {
	e.t.Helper()
	dest := filepath.Join(e.dir, name+".out")
	r := e.run(append([]string{"build", "--progress=plain", "-o", "type=local,dest=" + dest}, args...)...)
	if r.err != nil {
		return "", r
	}
	return dest, r
}

func readIfExists(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// runc CVE-2024-21626: a working directory under /proc/self/fd/N could be a directory fd runc
// leaked from the host, and a RUN starting there could climb to the host's root. The step must see
// only the container: either runc refuses the cwd or the climb stays inside.
func TestCVE202421626WorkdirProcSelfFd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSentinel(t)
	for n := 3; n <= 10; n++ {
		t.Run(fmt.Sprint("fd", n), func(t *testing.T) {
			ctx := e.project(fmt.Sprint("wd", n), map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
				fmt.Sprintf("WORKDIR /proc/self/fd/%d\n", n) +
				"RUN pwd > /pwd; cd ../../../../../../../../../../../.. && " +
				"{ cat ." + s.dir + "/token > /leak 2>/dev/null; echo pwned > ." + s.dir + "/written 2>/dev/null; ls . > /ls; true; }\n"})
			out, r := e.buildLocal(fmt.Sprint("wd", n), ctx)
			if out == "" {
				t.Logf("refused: %s", lastLines(r.out, 3))
			} else if strings.Contains(readIfExists(filepath.Join(out, "leak")), s.token) {
				t.Errorf("the step read the host sentinel through /proc/self/fd/%d", n)
			}
			s.intact(t)
		})
	}
}

// BuildKit CVE-2024-23651: a cache mount's source= (or a bind mount's source) that another build
// turns into a symlink between the check and the mount. Builds whose source stage makes /data a
// directory race builds whose source stage makes it a symlink to the host sentinel; no step may
// read or write the sentinel.
func TestCVE202423651MountSourceSymlinkSwap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSentinel(t)
	e.build(e.project("warm", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN true\n"}))
	step := "FROM {{BASE}}\n" +
		"RUN --mount=type=cache,id=race,target=/c,from=src,source=/data " +
		"{ cat /c/token > /seen 2>&1; echo pwned > /c/written 2>/dev/null; true; }\n" +
		"RUN --mount=type=bind,from=src,source=/data,target=/m " +
		"{ cat /m/token > /seen-bind 2>&1; true; }\n" +
		"RUN --mount=type=bind,from=src,source=/data/token,target=/f " +
		"{ cat /f > /seen-file 2>&1; true; }\n"
	dirCtx := e.project("asdir", map[string]string{"Dockerfile": "FROM {{BASE}} AS src\n" +
		"RUN mkdir /data && echo inside > /data/token\n" + step})
	linkCtx := e.project("aslink", map[string]string{"Dockerfile": "FROM {{BASE}} AS src\n" +
		"RUN ln -s " + s.dir + " /data\n" + step})
	var wg sync.WaitGroup
	var mu sync.Mutex
	outs := map[string]result{}
	for round := 0; round < 3; round++ {
		for _, c := range []struct{ name, ctx string }{{"dir", dirCtx}, {"link", linkCtx}} {
			wg.Add(1)
			go func(name string) {
				defer wg.Done()
				out, r := e.buildLocal(name, "--no-cache", c.ctx)
				mu.Lock()
				outs[name] = r
				mu.Unlock()
				for _, f := range []string{"seen", "seen-bind", "seen-file"} {
					if out != "" && strings.Contains(readIfExists(filepath.Join(out, f)), s.token) {
						t.Errorf("%s: /%s shows the host sentinel", name, f)
					}
				}
			}(fmt.Sprintf("%s-%d", c.name, round))
		}
	}
	wg.Wait()
	for name, r := range outs {
		if strings.HasPrefix(name, "dir") && r.err != nil {
			t.Errorf("%s: a plain directory source failed: %v\n%s", name, r.err, lastLines(r.out, 5))
		}
		if strings.HasPrefix(name, "link") && r.err != nil {
			t.Logf("%s refused: %s", name, lastLines(r.out, 2))
		}
	}
	s.intact(t)
}

// The same race where the path really can change under a build: a context bind mount (and COPY)
// whose source a concurrent process keeps swapping between a directory inside the context and a
// symlink to the host sentinel, and a shared cache mount in which another build keeps turning the
// parent of a nested mount target into a symlink to the sentinel.
func TestCVE202423651ContextAndCacheSymlinkRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSentinel(t)
	ctx := e.project("race", map[string]string{"real/real": "inside\n", "Dockerfile": "FROM {{BASE}}\n" +
		"RUN --mount=type=bind,source=data,target=/m { cat /m/token > /seen 2>&1; cat /m/real > /real 2>&1; true; }\n" +
		"COPY data/ /copied/\n"})
	swap := func(target string) {
		tmp := filepath.Join(ctx, ".data-swap")
		os.Remove(tmp)
		if err := os.Symlink(target, tmp); err == nil {
			os.Rename(tmp, filepath.Join(ctx, "data"))
		}
	}
	swap("real")
	writer := e.project("swapper", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"RUN --mount=type=cache,id=swap,target=/c sh -c 'for i in $(seq 300); do rm -rf /c/sub; ln -s " + s.dir + " /c/sub; rm /c/sub; mkdir -p /c/sub; done'\n"})
	reader := e.project("nested", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"RUN --mount=type=cache,id=swap,target=/c --mount=type=tmpfs,target=/c/sub/x { cat /c/sub/token > /seen 2>&1; ls /c/sub/x > /ls; true; }\n"})
	e.build(writer)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				swap("real")
				return
			default:
			}
			if i%2 == 0 {
				swap("real")
			} else {
				swap(s.dir)
			}
		}
	}()
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		for i := 0; i < 4; i++ {
			e.run("build", "--progress=plain", "--no-cache", writer)
		}
	}()
	for i := 0; i < 6; i++ {
		for _, c := range []struct{ name, ctx string }{{"ctx", ctx}, {"nested", reader}} {
			out, r := e.buildLocal(fmt.Sprintf("%s-%d", c.name, i), "--no-cache", c.ctx)
			if out == "" {
				t.Logf("%s-%d refused: %s", c.name, i, lastLines(r.out, 2))
				continue
			}
			if hits := filesContaining(t, out, s.token); len(hits) > 0 {
				t.Errorf("%s-%d: the host sentinel reached the image: %v", c.name, i, hits)
			}
		}
	}
	close(stop)
	wg.Wait()
	bg.Wait()
	s.intact(t)
}

// BuildKit CVE-2024-23652: a mount target below a symlink. Mounting, and removing the stub the
// mount point needed afterwards, must happen inside the rootfs: the host directory the symlink
// names (absolute, or / plus the host path) keeps every file.
func TestCVE202423652MountTargetUnderSymlink(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSentinel(t)
	setup := "FROM {{BASE}}\nRUN ln -s " + s.dir + " /link && ln -s / /rootlink && ln -s ../../../../../../../.." + s.dir + " /rellink\n"
	for name, run := range map[string]string{
		"tmpfs-abs":  "RUN --mount=type=tmpfs,target=/link/x true\n",
		"tmpfs-root": "RUN --mount=type=tmpfs,target=/rootlink" + s.dir + "/y true\n",
		"tmpfs-rel":  "RUN --mount=type=tmpfs,target=/rellink/new true\n",
		"bind":       "RUN --mount=type=bind,source=.,target=/link/z true\n",
		"bind-new":   "RUN --mount=type=bind,source=.,target=/link/fresh/deeper true\n",
		"cache":      "RUN --mount=type=cache,target=/link/c true\n",
		"secret":     "RUN --mount=type=secret,id=none,target=/link/secretstub true\n",
	} {
		t.Run(name, func(t *testing.T) {
			ctx := e.project("t-"+name, map[string]string{"Dockerfile": setup + run})
			if _, r := e.buildLocal("t-"+name, ctx); r.err != nil {
				t.Logf("refused: %s", lastLines(r.out, 2))
			}
			s.intact(t)
		})
	}
}

// buildah CVE-2024-1753: a bind mount from an image whose source is a symlink to / must show the
// image's root, not the host's.
func TestCVE20241753BindFromImageSymlinkToRoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSentinel(t)
	stage := "FROM {{BASE}} AS img\n" +
		"RUN ln -s / /link-to-root && ln -s ../../../../../../../.. /rel-link && echo image > /marker\n" +
		"FROM {{BASE}}\n"
	ctx := e.project("bindroot", map[string]string{"Dockerfile": stage +
		"RUN --mount=type=bind,from=img,source=link-to-root,target=/m " +
		"{ ls /m > /ls; cat /m/marker > /marker-seen; cat /m" + s.dir + "/token > /seen 2>&1; true; }\n" +
		"RUN --mount=type=bind,from=img,source=/link-to-root/,target=/m2 " +
		"{ ls /m2 > /ls2; cat /m2" + s.dir + "/token > /seen2 2>&1; true; }\n"})
	out, r := e.buildLocal("bindroot", ctx)
	if out == "" {
		t.Fatalf("a bind mount of an image's symlink to / failed:\n%s", r.out)
	}
	// A relative link climbing above the image's root: BuildKit clamps ".." at the root (so it
	// shows the image's /), strata's selection refuses it (contenthash.ErrEscapesRoot); either
	// way the host's root is not what the step sees.
	ctx2 := e.project("bindroot2", map[string]string{"Dockerfile": stage +
		"RUN --mount=type=bind,from=img,source=/rel-link,target=/m2 " +
		"{ ls /m2 > /ls-rel; cat /m2" + s.dir + "/token > /seen-rel 2>&1; true; }\n"})
	if out2, r2 := e.buildLocal("bindroot2", ctx2); out2 == "" {
		t.Logf("refused: %s", lastLines(r2.out, 2))
	} else if strings.Contains(readIfExists(filepath.Join(out2, "seen-rel")), s.token) || !strings.Contains(readIfExists(filepath.Join(out2, "ls-rel")), "link-to-root") {
		t.Errorf("/rel-link mount is not the image's root:\n%s", readIfExists(filepath.Join(out2, "ls-rel")))
	}
	// Through the link to a host path that exists only on the host: refusing (not found in the
	// image) is the right answer, showing the host's file is not.
	ctx3 := e.project("bindroot3", map[string]string{"Dockerfile": stage +
		"RUN --mount=type=bind,from=img,source=link-to-root" + s.dir + ",target=/m3 " +
		"{ cat /m3/token > /seen3 2>&1; true; }\n"})
	if out3, r3 := e.buildLocal("bindroot3", ctx3); out3 == "" {
		t.Logf("refused: %s", lastLines(r3.out, 2))
	} else if strings.Contains(readIfExists(filepath.Join(out3, "seen3")), s.token) {
		t.Errorf("/seen3 shows the host sentinel")
	}
	for _, f := range []string{"seen", "seen2"} {
		if strings.Contains(readIfExists(filepath.Join(out, f)), s.token) {
			t.Errorf("/%s shows the host sentinel", f)
		}
	}
	if got := readIfExists(filepath.Join(out, "marker-seen")); got != "image\n" {
		t.Errorf("the mount of link-to-root does not show the image's /marker: %q", got)
	}
	for _, f := range []string{"ls", "ls2"} {
		if ls := readIfExists(filepath.Join(out, f)); !strings.Contains(ls, "link-to-root") {
			t.Errorf("/%s is not the image's root:\n%s", f, ls)
		}
	}
	s.intact(t)
}

// buildah CVE-2024-9675: a cache mount id is a name, not a path. ids that climb (../../..) or are
// absolute host paths must keep the cache under the store.
func TestCVE20249675CacheIDStaysInStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSentinel(t)
	mark := randomToken(t, "pwned-")
	ids := []string{"../../..", "../../../../../../../../../..", s.dir, "../../../../../../../../../.." + s.dir, "./../x/../../y"}
	var b strings.Builder
	b.WriteString("FROM {{BASE}}\n")
	for i, id := range ids {
		fmt.Fprintf(&b, "RUN --mount=type=cache,id=%s,target=/c%d touch /c%d/%s-%d\n", id, i, i, mark, i)
	}
	ctx := e.project("cacheid", map[string]string{"Dockerfile": b.String()})
	if _, r := e.buildLocal("cacheid", ctx); r.err != nil {
		t.Logf("refused: %s", lastLines(r.out, 2))
	}
	s.intact(t)
	// Anything named mark must be under the store; look in the test's dir and in each ancestor
	// of the store (a climbing id lands in one of them).
	filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), mark) && !strings.HasPrefix(p, e.root+"/") {
			t.Errorf("cache mount wrote %s, outside the store %s", p, e.root)
		}
		return nil
	})
	for a := filepath.Dir(e.dir); ; a = filepath.Dir(a) {
		ents, _ := os.ReadDir(a)
		for _, d := range ents {
			if strings.HasPrefix(d.Name(), mark) {
				t.Errorf("cache mount wrote %s, outside the store", filepath.Join(a, d.Name()))
				os.Remove(filepath.Join(a, d.Name()))
			}
		}
		if a == "/" {
			break
		}
	}
}

// kaniko CVE-2026-28406 style: paths in the context that climb out, a context symlink to the
// host, and a symlink planted by an earlier layer (RUN, or a pulled layer) that a later COPY
// writes through. Reads must not reach the sentinel and writes must land inside the image.
func TestCVE202628406ContextAndLayerSymlinks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSentinel(t)
	rel, err := filepath.Rel(filepath.Join(e.dir, "ctx"), s.dir)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("dotdot sources", func(t *testing.T) {
		for i, src := range []string{rel + "/token", "../" + rel + "/token", "/../../../../../../../.." + s.dir + "/token", "sub/../../" + rel + "/token"} {
			ctx := e.project("ctx", map[string]string{"Dockerfile": fmt.Sprintf("FROM {{BASE}}\nCOPY %s /got\n", src), "sub/f": "f"})
			out, r := e.buildLocal(fmt.Sprint("dotdot", i), ctx)
			if out != "" && strings.Contains(readIfExists(filepath.Join(out, "got")), s.token) {
				t.Errorf("COPY %s read the host sentinel", src)
			}
			if out == "" {
				t.Logf("COPY %s refused: %s", src, lastLines(r.out, 1))
			}
		}
		s.intact(t)
	})

	t.Run("context symlink out", func(t *testing.T) {
		ctx := e.project("ctxlink", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
			"COPY abs /abs\nCOPY relup /relup\nCOPY abs/token /via-abs\n", "keep": "k"})
		mustSymlinkT(t, s.dir, filepath.Join(ctx, "abs"))
		mustSymlinkT(t, "../../../../../../../.."+s.dir, filepath.Join(ctx, "relup"))
		out, r := e.buildLocal("ctxlink", ctx)
		if out != "" {
			for _, f := range []string{"via-abs", "abs/token", "relup/token"} {
				if strings.Contains(readIfExists(filepath.Join(out, f)), s.token) {
					t.Errorf("/%s holds the host sentinel", f)
				}
			}
		} else {
			t.Logf("refused: %s", lastLines(r.out, 2))
		}
		// BuildKit resolves a context symlink inside the context, so one naming a host path is
		// "not found" even when only the link itself is copied; strata does the same.
		for i, df := range []string{"COPY abs /abs\n", "COPY relup /relup\n", "COPY abs/ /d/\n", "COPY relup/* /d/\n"} {
			ctx2 := e.project(fmt.Sprint("ctxlink", i+2), map[string]string{"Dockerfile": "FROM {{BASE}}\n" + df})
			mustSymlinkT(t, s.dir, filepath.Join(ctx2, "abs"))
			mustSymlinkT(t, "../../../../../../../.."+s.dir, filepath.Join(ctx2, "relup"))
			out, r := e.buildLocal(fmt.Sprint("ctxlink", i+2), ctx2)
			if out != "" && len(filesContaining(t, out, s.token)) > 0 {
				t.Errorf("%s: host sentinel content in the output %v", strings.TrimSpace(df), filesContaining(t, out, s.token))
			}
			if out == "" {
				t.Logf("%s refused: %s", strings.TrimSpace(df), lastLines(r.out, 1))
			}
		}
		s.intact(t)
	})

	t.Run("RUN plants symlink then COPY", func(t *testing.T) {
		ctx := e.project("plant", map[string]string{"f.txt": "payload\n", "d/g.txt": "payload-g\n",
			"Dockerfile": "FROM {{BASE}}\n" +
				"RUN ln -s " + s.dir + " /planted && ln -s / /rootlink && ln -s " + s.dir + "/token /filelink\n" +
				"COPY f.txt /planted/f.txt\nCOPY d/ /planted/x/\nCOPY f.txt /rootlink" + s.dir + "/root.txt\n" +
				"COPY f.txt /filelink\nWORKDIR /planted/wd\n"})
		o, _ := e.buildOCI("plant", ctx)
		inside := strings.TrimPrefix(s.dir, "/")
		found := map[string]bool{}
		for _, l := range o.layers {
			for n := range l {
				found[n] = true
			}
		}
		for _, n := range []string{inside + "/f.txt", inside + "/x/g.txt", inside + "/root.txt", inside + "/wd"} {
			if !found[n] {
				t.Errorf("the write through the planted symlink did not land inside the image at /%s", n)
			}
		}
		s.intact(t)
	})

	t.Run("pulled layer plants symlink then COPY", func(t *testing.T) {
		ref := pushCrafted(t, "crafted/plant", makeLayer(t,
			tarEnt{name: "planted", link: s.dir, typ: tar.TypeSymlink},
			tarEnt{name: "relplant", link: "../../../../../../../.." + s.dir, typ: tar.TypeSymlink},
			tarEnt{name: "passwdlink", link: s.dir + "/token", typ: tar.TypeSymlink},
			tarEnt{name: "hardlinked", link: "passwdlink", typ: tar.TypeLink},
		))
		ctx := e.project("pulled", map[string]string{"f.txt": "payload\n",
			"Dockerfile": "FROM " + ref + " AS crafted\n" +
				"COPY f.txt /planted/f.txt\nCOPY f.txt /relplant/g.txt\nCOPY f.txt /hardlinked\n" +
				"RUN cat /passwdlink > /seen 2>&1; cat /planted/token >> /seen 2>&1; true\n" +
				"FROM {{BASE}}\nCOPY --from=crafted / /all/\nCOPY --from=crafted /hardlinked /planted /out/\n" +
				"COPY f.txt /out/planted/w.txt\n"})
		o, _ := e.buildOCI("pulled", ctx)
		if hits := o.layersContain(s.token); len(hits) > 0 {
			t.Errorf("host sentinel content in layers %v", hits)
		}
		inside := strings.TrimPrefix(s.dir, "/")
		found := map[string]bool{}
		for _, l := range o.layers {
			for n := range l {
				found[n] = true
			}
		}
		// A COPY source that is a symlink is followed (inside the source's root, as BuildKit), so
		// /planted's contents land in /out/ and /out/planted is a directory of the image's own.
		for _, n := range []string{"all/" + inside + "/f.txt", "all/hardlinked", "out/f.txt", "out/g.txt", "out/planted/w.txt"} {
			if !found[n] {
				t.Errorf("/%s missing: a write through a pulled symlink did not land inside the image", n)
			}
		}
		s.intact(t)
	})

	t.Run("pulled hostile layer is refused", func(t *testing.T) {
		// containerd's SymlinkUpAndOut and HardlinkRelative, as a pulled layer.
		for i, ents := range [][]tarEnt{
			{{name: "etc/", typ: tar.TypeDir}, {name: "dummy/", typ: tar.TypeDir},
				{name: "localetc", link: s.dir + "/dummy/..", typ: tar.TypeSymlink}, {name: "localetc/token", body: "pwned"}},
			{{name: "breakouts/", typ: tar.TypeDir}, {name: "breakouts/d1", link: "../../../../../../../.." + s.dir, typ: tar.TypeSymlink},
				{name: "breakouts/mypasswd", link: "breakouts/d1/token", typ: tar.TypeLink}},
			{{name: "../../../../../../../.." + s.dir + "/token", body: "pwned"}},
		} {
			ref := pushCrafted(t, fmt.Sprint("crafted/hostile", i), makeLayer(t, ents...))
			ctx := e.project(fmt.Sprint("hostile", i), map[string]string{"Dockerfile": "FROM {{BASE}}\nCOPY --from=" + ref + " / /all/\n"})
			r := e.buildFail(ctx)
			t.Logf("refused: %s", lastLines(r.out, 1))
		}
		s.intact(t)
	})
}

// moby CVE-2024-24557: an imported cache is only ever a hit for a step with exactly the same key.
// The cache is made from a Dockerfile that differs from the one built in a single field; a step
// that reads that field must miss and produce the right content, and the image config must carry
// the built Dockerfile's values, never the cache's.
func TestCVE202424557CacheFromExactKeyOnly(t *testing.T) {
	t.Parallel()
	lines := map[string]string{
		"env":        "ENV X=a",
		"user":       "USER 0",
		"workdir":    "WORKDIR /w1",
		"shell":      `SHELL ["/bin/sh", "-c"]`,
		"arg":        "ARG A=a",
		"entrypoint": `ENTRYPOINT ["/bin/echo", "a"]`,
		"cmd":        `CMD ["a"]`,
		"label":      "LABEL l=a",
		"expose":     "EXPOSE 80",
		"stopsignal": "STOPSIGNAL SIGTERM",
		"volume":     "VOLUME /va",
	}
	order := []string{"arg", "env", "user", "workdir", "shell", "entrypoint", "cmd", "label", "expose", "stopsignal", "volume"}
	df := func(over map[string]string) string {
		var b strings.Builder
		b.WriteString("FROM {{BASE}}\nRUN mkdir -m 777 /o\n")
		for _, k := range order {
			l := lines[k]
			if v, ok := over[k]; ok {
				l = v
			}
			b.WriteString(l + "\n")
		}
		b.WriteString(`RUN echo "$X $A $(id -u) $(pwd) $0" > /o/out` + "\n")
		return b.String()
	}
	cacheEnv := newEnv(t)
	cacheDir := filepath.Join(cacheEnv.dir, "cache")
	cacheEnv.build("--cache-to", "type=local,dest="+cacheDir+",mode=max", cacheEnv.project("a", map[string]string{"Dockerfile": df(nil)}))

	variants := []struct {
		field, line string
		runMiss     bool   // the field changes what the RUN sees
		out         string // /o/out the RUN must write ("" when the field does not reach it)
		config      func(o *ociResult) string
		want        string
	}{
		{field: "env", line: "ENV X=b", runMiss: true, out: "b a 0 /w1 /bin/sh\n"},
		{field: "arg", line: "ARG A=b", runMiss: true, out: "a b 0 /w1 /bin/sh\n"},
		{field: "user", line: "USER 1000", runMiss: true, out: "a a 1000 /w1 /bin/sh\n"},
		{field: "workdir", line: "WORKDIR /w2", runMiss: true, out: "a a 0 /w2 /bin/sh\n"},
		{field: "shell", line: `SHELL ["/bin/ash", "-c"]`, runMiss: true, out: "a a 0 /w1 /bin/ash\n"},
		{field: "entrypoint", line: `ENTRYPOINT ["/bin/echo", "b"]`, config: func(o *ociResult) string { return strings.Join(o.config.Config.Entrypoint, " ") }, want: "/bin/echo b"},
		{field: "cmd", line: `CMD ["b"]`, config: func(o *ociResult) string { return strings.Join(o.config.Config.Cmd, " ") }, want: "b"},
		{field: "label", line: "LABEL l=b", config: func(o *ociResult) string { return o.config.Config.Labels["l"] }, want: "b"},
		{field: "expose", line: "EXPOSE 81", config: func(o *ociResult) string { return keys(o.config.Config.ExposedPorts) }, want: "81/tcp"},
		{field: "stopsignal", line: "STOPSIGNAL SIGKILL", config: func(o *ociResult) string { return o.config.Config.StopSignal }, want: "SIGKILL"},
		{field: "volume", line: "VOLUME /vb", config: func(o *ociResult) string { return keys(o.config.Config.Volumes) }, want: "/vb"},
	}
	for _, v := range variants {
		t.Run(v.field, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := e.project("b", map[string]string{"Dockerfile": df(map[string]string{v.field: v.line})})
			o, r := e.buildOCI("b", "--cache-from", "type=local,src="+cacheDir, ctx)
			states := stepStates(r.out)
			for name, st := range states {
				if strings.Contains(name, "/o/out") {
					if v.runMiss && st != "MISS" {
						t.Errorf("%s: %s with a cache made for other %s, want MISS", name, st, v.field)
					}
				}
			}
			if v.out != "" {
				if got := layerFile(o, "o/out"); got != v.out {
					t.Errorf("/o/out = %q, want %q", got, v.out)
				}
			}
			if v.config != nil {
				if got := v.config(o); got != v.want {
					t.Errorf("config %s = %q, want %q (the cache's Dockerfile had %q)", v.field, got, v.want, lines[v.field])
				}
			}
		})
	}
}

// -o type=local follows BuildKit's local exporter (the client side of its filesync, fsutil's
// DiskWriter with buildx's filter): files belong to the user running the build, modes are kept
// (setuid and setgid included), device nodes and fifos are recreated, and everything is written
// inside dest without following a symlink already there, so an earlier export into the same
// directory cannot redirect a later one onto the host.
func TestCVELocalOutputSpecialFilesAndSymlinks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := newSentinel(t)
	dest := filepath.Join(e.dir, "dest")

	ctx := e.project("special", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"RUN mknod /chardev c 1 3 && mkfifo /fifo && touch /suid /sgid /owned && chmod 4755 /suid && chmod 2755 /sgid && chown 1000:1000 /owned\n"})
	e.build("-o", "type=local,dest="+dest, ctx)
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(dest, "chardev"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 1<<8|3 {
		t.Errorf("chardev: mode %o rdev %d, %v; BuildKit recreates device nodes", st.Mode, st.Rdev, err)
	}
	if fi, err := os.Lstat(filepath.Join(dest, "fifo")); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(dest, "suid")); err != nil || fi.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("suid: %v %v; BuildKit keeps the setuid bit", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(dest, "sgid")); err != nil || fi.Mode()&fs.ModeSetgid == 0 {
		t.Errorf("sgid: %v %v; BuildKit keeps the setgid bit", fi, err)
	}
	for _, p := range []string{"owned", "suid", "chardev", "bin/busybox"} {
		if err := syscall.Lstat(filepath.Join(dest, p), &st); err != nil || int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid() {
			t.Errorf("%s: owner %d:%d (%v), want the builder's %d:%d as BuildKit", p, st.Uid, st.Gid, err, os.Getuid(), os.Getgid())
		}
	}

	// Two exports into one directory: the first plants symlinks to the host, the second has real
	// files and directories at those paths.
	plant := e.project("plant-out", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"RUN ln -s " + s.dir + " /a && ln -s " + s.dir + "/token /f && ln -s " + s.dir + "/x /x && ln -s " + s.dir + " /d\n"})
	write := e.project("write-out", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"RUN mkdir -p /a/sub /x && echo pwned > /a/new && echo pwned > /f && echo pwned > /x/keep && chmod 700 /a && mkdir /d\n"})
	dest2 := filepath.Join(e.dir, "dest2")
	e.build("-o", "type=local,dest="+dest2, plant)
	e.build("-o", "type=local,dest="+dest2, write)
	s.intact(t)
	for _, p := range []string{"a/new", "f", "x/keep"} {
		if got := readIfExists(filepath.Join(dest2, p)); got != "pwned\n" {
			t.Errorf("%s = %q, want the second export's file inside dest", p, got)
		}
	}
	for _, p := range []string{"a", "x", "d"} {
		if fi, err := os.Lstat(filepath.Join(dest2, p)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v %v, want a directory replacing the symlink", p, fi, err)
		}
	}
}

func keys[V any](m map[string]V) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// layerFile returns the content of rel in the topmost layer that has it.
func layerFile(o *ociResult, rel string) string {
	for i := len(o.layers) - 1; i >= 0; i-- {
		if ent, ok := o.layers[i][rel]; ok {
			return string(ent.data)
		}
	}
	return ""
}

// lastLines returns the build's ERROR lines (the Dockerfile excerpt after them says nothing of
// why), or else its last n lines.
func lastLines(s string, n int) string {
	var errs []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "ERROR: ") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 {
		return strings.Join(errs, " | ")
	}
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

func mustSymlinkT(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// tarEnt is one entry of a crafted layer: a regular file unless typ says otherwise.
type tarEnt struct {
	name, body, link string
	typ              byte
}

func makeLayer(t *testing.T, ents ...tarEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Format: tar.FormatPAX}
		switch e.typ {
		case 0:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case tar.TypeDir:
			h.Mode = 0o755
		case tar.TypeSymlink:
			h.Mode = 0o777
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			io.WriteString(tw, e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pushCrafted pushes the busybox base plus one crafted layer to the test registry, bypassing
// every check strata makes on layers it writes itself.
func pushCrafted(t *testing.T, repo string, layerTar []byte) string {
	t.Helper()
	return pushWithDiffIDs(t, repo, layerTar, v1.Hash{})
}

// pushWithDiffIDs is pushCrafted with the config's diffID of the crafted layer replaced by claim
// (unless zero): the blob digests stay right, so only a check of the uncompressed bytes against
// the config sees the lie.
func pushWithDiffIDs(t *testing.T, repo string, layerTar []byte, claim v1.Hash) string {
	t.Helper()
	base, err := name.ParseReference(baseRef, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(base)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil })
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	if claim != (v1.Hash{}) {
		cfg.RootFS.DiffIDs[len(cfg.RootFS.DiffIDs)-1] = claim
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(testReg.Addr()+"/"+repo+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

// Snapshots are shared by diffID across images. An image whose config lists, for its own layer,
// the diffID of another image's layer must be refused when pulled: otherwise its files would be
// unpacked as that layer and every later build FROM the honest image would run on them (a cache
// poisoning across images, in the spirit of moby CVE-2024-24557).
func TestPulledLayerLyingDiffID(t *testing.T) {
	e := newEnv(t)
	good := makeLayer(t, tarEnt{name: "who", body: "honest\n"})
	goodRef := pushWithDiffIDs(t, "crafted/honest", good, v1.Hash{})
	gd, _, err := v1.SHA256(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	evilRef := pushWithDiffIDs(t, "crafted/liar", makeLayer(t, tarEnt{name: "who", body: "planted\n"}), gd)

	liar := e.project("liar", map[string]string{"Dockerfile": "FROM " + evilRef + "\nRUN cat /who\n"})
	r := e.run("build", "--progress=plain", liar)
	if r.err == nil {
		t.Errorf("a build FROM an image lying about its layer's diffID succeeded:\n%s", r.out)
	} else if !strings.Contains(r.out, "not the diffID "+gd.String()) {
		t.Errorf("the error does not say the layer is not its diffID:\n%s", r.out)
	}
	honest := e.project("honest", map[string]string{"Dockerfile": "FROM " + goodRef + "\nRUN cp /who /seen\n"})
	dest := filepath.Join(t.TempDir(), "out")
	if r := e.run("build", "--progress=plain", "-o", "type=local,dest="+dest, honest); r.err != nil {
		t.Fatalf("honest build: %v\n%s", r.err, r.out)
	}
	if got := readFile(t, filepath.Join(dest, "seen")); got != "honest\n" {
		t.Errorf("the honest image's RUN saw /who = %q: the liar's layer was used as the honest one", got)
	}
	if r := e.run("store", "verify"); r.err != nil || !strings.HasSuffix(strings.TrimSpace(r.out), ": ok") {
		t.Errorf("store verify: %v\n%s", r.err, r.out)
	}
}
