package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/testenv"
)

// rootlessUser is a real non-root account made for one test, with its own /etc/subuid and
// /etc/subgid ranges; it and its home are removed when the test ends.
type rootlessUser struct {
	name     string
	uid, gid int
	home     string
	bin      string // a copy of strata the user can execute
}

// rootlessUsers counts the users made, so each test gets a fresh name.
var rootlessUsers int

func newRootlessUser(t *testing.T) *rootlessUser {
	t.Helper()
	testenv.RequireTools(t, "useradd", "userdel", "usermod", "newuidmap", "newgidmap", "umoci")
	rootlessUsers++
	name := fmt.Sprintf("strata-rl%d-%d", os.Getpid()%100000, rootlessUsers)
	home := filepath.Join("/home", name)
	if out, err := exec.Command("useradd", "--create-home", "--home-dir", home, "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// userdel also drops the user's /etc/subuid and /etc/subgid lines.
		if out, err := exec.Command("userdel", "--remove", name).CombinedOutput(); err != nil {
			t.Errorf("userdel: %v\n%s", err, out)
		}
		os.RemoveAll(home)
	})
	// useradd allocates subordinate ranges when login.defs says so; make sure there is one.
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		if !strings.Contains(readFileOrEmpty(f), name+":") {
			flag := "--add-subuids"
			if strings.HasSuffix(f, "subgid") {
				flag = "--add-subgids"
			}
			if out, err := exec.Command("usermod", flag, "700000-765535", name).CombinedOutput(); err != nil {
				t.Fatalf("usermod %s: %v\n%s", flag, err, out)
			}
		}
	}
	u := &rootlessUser{name: name, home: home}
	var st syscall.Stat_t
	if err := syscall.Stat(home, &st); err != nil {
		t.Fatal(err)
	}
	u.uid, u.gid = int(st.Uid), int(st.Gid)
	// The one directory a rootless build makes outside the home (rootlessRunDir).
	t.Cleanup(func() { os.RemoveAll(filepath.Join(os.TempDir(), "strata-run-"+strconv.Itoa(u.uid))) })
	// The test binary lives in a root-only temp dir: give the user a copy.
	u.bin = filepath.Join(home, "strata")
	data, err := os.ReadFile(strataBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(u.bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(u.bin, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	return u
}

func readFileOrEmpty(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// command is strata run as the user (its uid, gid and group, nothing of root's) in its home, with
// HOME and env as its environment.
func (u *rootlessUser) command(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(u.bin, args...)
	cmd.Dir = u.home
	cmd.Env = append([]string{"HOME=" + u.home}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{uint32(u.gid)}}}
	return cmd
}

// run runs strata as the user, with the environment a login would give it.
func (u *rootlessUser) run(t *testing.T, args ...string) result {
	t.Helper()
	cmd := u.command([]string{"USER=" + u.name, "LOGNAME=" + u.name, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return result{out: string(out), err: err, code: code}
}

// writeProject writes files into dir as the user would have them.
func (u *rootlessUser) writeProject(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(strings.ReplaceAll(content, "{{BASE}}", baseRef)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, u.uid, u.gid)
	}); err != nil {
		t.Fatal(err)
	}
}

const rootlessDockerfile = `FROM {{BASE}}
RUN mkdir -p /out/d /out/gone && echo root > /out/root.txt && echo n > /out/n.txt \
 && chown 1234 /out/n.txt && chown 1234:5678 /out/d && touch /out/d/old /out/gone/x \
 && ln -s n.txt /out/link && chown -h 65534:65534 /out/link
RUN rm -rf /out/gone /out/d && mkdir /out/d && touch /out/d/new && chown 1234:1234 /out/d/new
RUN --network=none sh -c 'tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " > /out/ifaces && ls /sys/class/net > /out/sysnet'
COPY --chown=4321:8765 a.txt /copied/a.txt
COPY b.txt /copied/
RUN stat -c '%n %u:%g %a' /out/* /out/d/* /copied/* > /out/listing
`

// A non-root user builds a Dockerfile with RUN and COPY: files keep, inside the image, the owners a
// root build gives them; the store is the user's XDG data dir; a rebuild is all cached.
func TestRootlessBuild(t *testing.T) {
	u := newRootlessUser(t)
	ctx := filepath.Join(u.home, "proj")
	files := map[string]string{"Dockerfile": rootlessDockerfile, "a.txt": "a\n", "b.txt": "b\n"}
	u.writeProject(t, ctx, files)
	outsideBefore := rootOwnedOutside(t)

	const epoch = "SOURCE_DATE_EPOCH=1700000000"
	layout := filepath.Join(u.home, "img")
	args := []string{"build", "--progress=plain", "--build-arg", epoch, "-o", "type=oci,tar=false,rewrite-timestamp=true,dest=" + layout, "--iidfile", filepath.Join(u.home, "iid"), ctx}
	r := u.run(t, append(args, "-t", "rl:1")...)
	if r.err != nil {
		t.Fatalf("rootless build: %v\n%s", r.err, r.out)
	}

	// The store is the user's, under ~/.local/share/strata, and nothing it wrote is root's.
	storeDir := filepath.Join(u.home, ".local", "share", "strata")
	if _, err := os.Stat(filepath.Join(storeDir, "blobs", "sha256")); err != nil {
		t.Fatalf("no store under the user's XDG data dir: %v\n%s", err, r.out)
	}
	checkOwnedOutsideStore(t, u, storeDir)
	// Inside, uid 1234 is the 1234th subordinate id: that is who owns n.txt on the host.
	subStart, _ := subIDs(t, "/etc/subuid", u.name)
	found := false
	filepath.Walk(filepath.Join(storeDir, "snapshots"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == "n.txt" {
			st := fi.Sys().(*syscall.Stat_t)
			found = true
			if int(st.Uid) != subStart+1233 {
				t.Errorf("%s is owned by host uid %d, want %d (subordinate id for 1234)", p, st.Uid, subStart+1233)
			}
		}
		return nil
	})
	if !found {
		t.Errorf("no snapshot holds out/n.txt")
	}
	// The one directory outside the home: the mountpoint of the namespace's private tmpfs (runc
	// state, bundles), the user's and empty once the build is over.
	// The user's environment has no TMPDIR (command passes HOME and the variables the test names), so
	// its run dir is under /tmp whatever TMPDIR this test runs with.
	runDir := filepath.Join("/tmp", "strata-run-"+strconv.Itoa(u.uid))
	if fi, err := os.Stat(runDir); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(u.uid) {
		t.Errorf("run dir %s: %v (want a directory of the user's)", runDir, err)
	} else if ents, _ := os.ReadDir(runDir); len(ents) != 0 {
		t.Errorf("run dir %s holds %d entries after the build, want none", runDir, len(ents))
	}
	if after := rootOwnedOutside(t); after != outsideBefore {
		t.Errorf("the build changed root's places outside the user's home:\nbefore %s\nafter  %s", outsideBefore, after)
	}

	// Rebuild: every step cached.
	r2 := u.run(t, append(args, "-t", "rl:2")...)
	if r2.err != nil {
		t.Fatalf("rootless rebuild: %v\n%s", r2.err, r2.out)
	}
	states := stepStates(r2.out)
	if len(states) < 7 {
		t.Fatalf("rebuild shows %d steps, want 7:\n%s", len(states), r2.out)
	}
	for step, state := range states {
		if state != "CACHED" && !strings.Contains(step, "FROM") {
			t.Errorf("rebuild: %s is %s, want CACHED\n%s", step, state, r2.out)
		}
	}

	// History reads only records, the user's own: it runs outside the namespace.
	if r := u.run(t, "history"); r.err != nil || strings.Count(r.out, "\n") < 3 {
		t.Errorf("strata history as the user: %v\n%s", r.err, r.out)
	}
	// The store commands run in the namespace too: they can remove what belongs to subordinate ids.
	if r := u.run(t, "du"); r.err != nil {
		t.Errorf("strata du as the user: %v\n%s", r.err, r.out)
	}
	if r := u.run(t, "prune", "--all"); r.err != nil || !strings.Contains(r.out, "Removed") {
		t.Errorf("strata prune --all as the user: %v\n%s", r.err, r.out)
	}
	if left, _ := os.ReadDir(filepath.Join(storeDir, "snapshots")); len(left) != 0 {
		t.Errorf("prune --all left %d snapshots (files of subordinate ids not removable?)", len(left))
	}
	if r := u.run(t, "store", "verify"); r.err != nil {
		t.Errorf("strata store verify as the user: %v\n%s", r.err, r.out)
	}

	// The same Dockerfile built by root.
	e := newEnv(t)
	rootCtx := e.project("proj", files)
	rootLayout := filepath.Join(e.dir, "img")
	e.build("-t", "rl:1", "--build-arg", epoch, "-o", "type=oci,tar=false,rewrite-timestamp=true,dest="+rootLayout, "--iidfile", filepath.Join(e.dir, "iid"), rootCtx)

	got, want := imageListing(t, layout), imageListing(t, rootLayout)
	if got != want {
		t.Errorf("rootless image filesystem differs from the root build's (- root, + rootless):\n%s", lineDiff(want, got))
	}
	for _, line := range []string{
		"out/n.txt 1234:0 0644", "out/d 0:0 0755", "out/d/new 1234:1234 0644", "out/link 65534:65534",
		"out/root.txt 0:0 0644", "copied/a.txt 4321:8765 0644", "copied/b.txt 0:0 0644",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("rootless image lacks %q:\n%s", line, got)
		}
	}
	for _, gone := range []string{"out/gone", "out/d/old"} {
		if strings.Contains(got, gone+" ") {
			t.Errorf("rootless image still has %s (whiteout or opaque dir lost):\n%s", gone, got)
		}
	}
	rootfs := unpackImage(t, layout)
	// The owners a RUN step sees inside the rootless build are the image's. (The listing has no
	// times: a RUN that writes the clock, such as ls -l's minutes, makes the image differ from
	// a build made a minute later, rootless or not.)
	wantSeen := "/out/d/new 1234:1234 644\n/out/link 65534:65534 777\n/out/n.txt 1234:0 644\n" +
		"/out/root.txt 0:0 644\n/copied/a.txt 4321:8765 644\n/copied/b.txt 0:0 644\n"
	if seen := readFile(t, filepath.Join(rootfs, "out", "listing")); !containsLines(seen, wantSeen) {
		t.Errorf("a RUN step of the rootless build sees:\n%swant lines:\n%s", seen, wantSeen)
	}
	for _, f := range []string{"ifaces", "sysnet"} {
		if got := readFile(t, filepath.Join(rootfs, "out", f)); strings.TrimSpace(got) != "lo" {
			t.Errorf("RUN --network=none saw interfaces %q in %s, want only lo", got, f)
		}
	}
	if a, b := readFile(t, filepath.Join(u.home, "iid")), readFile(t, filepath.Join(e.dir, "iid")); a != b || !strings.HasPrefix(a, "sha256:") {
		t.Errorf("image digest: rootless %s, root %s; how the images differ (- root, + rootless):\n%s", a, b, explainImageDiff(t, rootLayout, layout, "1"))
	}
}

// An image does not depend on the store it was built in or on who built it. A rootless user
// builds, edits one file and builds again: the second build's COPY steps link the unchanged
// files from the first one's snapshots and copy gzip members from its blobs. Root then builds
// the edited context in a fresh store with --no-cache on one core. The COPY layers (written to
// existing directories, so no file takes the build's time) must be the same blobs, and the image
// re-timed with SOURCE_DATE_EPOCH (whose RUN layer is clamped too) the same digest.
func TestRootlessIncrementalEqualsRootCold(t *testing.T) {
	u := newRootlessUser(t)
	ctx := filepath.Join(u.home, "proj")
	files := map[string]string{"Dockerfile": `FROM {{BASE}}
COPY . /
COPY --chown=1234:5678 . /
RUN cat /src/d02/f0042.txt /src/d01/f0017.txt > /out.txt && chown 4321:8765 /out.txt
`}
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 400 {
		var b strings.Builder
		for b.Len() < 500+r.IntN(6000) {
			fmt.Fprintf(&b, "line %d of file %d: %d\n", b.Len(), i, r.IntN(1e6))
		}
		files[fmt.Sprintf("src/d%02d/f%04d.txt", i%8, i)] = b.String()
	}
	files["data/big.txt"] = strings.Repeat("0123456789abcdef\n", 1<<16) // over 1 MiB: members of its own
	u.writeProject(t, ctx, files)

	const epoch = "SOURCE_DATE_EPOCH=1700000000"
	type built struct{ plain, stamped, out string }
	build := func(what string, run func(args ...string) result, dir string, extra ...string) built {
		t.Helper()
		b := built{plain: filepath.Join(dir, what+"-plain"), stamped: filepath.Join(dir, what+"-stamped")}
		args := append([]string{"build", "--progress=plain", "--build-arg", epoch, "-t", "inc:1",
			"-o", "type=oci,tar=false,dest=" + b.plain, "-o", "type=oci,tar=false,rewrite-timestamp=true,dest=" + b.stamped}, extra...)
		res := run(append(args, ctx)...)
		if res.err != nil {
			t.Fatalf("%s: %v\n%s", what, res.err, res.out)
		}
		b.out = res.out
		return b
	}
	asUser := func(args ...string) result { return u.run(t, args...) }
	build("v1", asUser, u.home)
	edited := filepath.Join(ctx, "src/d03/f0043.txt")
	if err := os.WriteFile(edited, []byte("edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(edited, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	inc := build("v2", asUser, u.home)
	if n := len(linkedLine.FindAllString(inc.out, -1)); n != 2 {
		t.Errorf("rootless rebuild: %d COPY steps linked unchanged files, want 2\n%s", n, inc.out)
	}

	e := newEnv(t)
	cold := build("cold", func(args ...string) result {
		return e.runIn("", []string{"GOMAXPROCS=1"}, args...)
	}, e.dir, "--no-cache")
	incBlobs, _ := ociImageLayers(t, inc.plain)
	coldBlobs, _ := ociImageLayers(t, cold.plain)
	if len(incBlobs) != 4 || len(coldBlobs) != 4 || incBlobs[1] != coldBlobs[1] || incBlobs[2] != coldBlobs[2] {
		t.Errorf("COPY layers: rootless incremental %v, root cold %v; how they differ (- root cold, + rootless incremental):\n%s",
			incBlobs, coldBlobs, explainImageDiff(t, cold.plain, inc.plain, "1"))
	}
	if a, b := layoutManifest(inc.stamped, "1").digest, layoutManifest(cold.stamped, "1").digest; a != b || a == "" {
		t.Errorf("re-timed image: rootless incremental %s, root cold %s; how they differ (- root cold, + rootless incremental):\n%s",
			a, b, explainImageDiff(t, cold.stamped, inc.stamped, "1"))
	}
}

// Without a /etc/subuid range the build says which file to edit, before doing anything.
func TestRootlessNoSubuid(t *testing.T) {
	u := newRootlessUser(t)
	for _, flag := range []string{"--del-subuids", "--del-subgids"} {
		if out, err := exec.Command("usermod", flag, "0-4294967294", u.name).CombinedOutput(); err != nil {
			t.Fatalf("usermod %s: %v\n%s", flag, err, out)
		}
	}
	ctx := filepath.Join(u.home, "proj")
	u.writeProject(t, ctx, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN true\n"})
	r := u.run(t, "build", "--progress=plain", ctx)
	if r.err == nil {
		t.Fatalf("build without subordinate ids succeeded:\n%s", r.out)
	}
	for _, want := range []string{"/etc/subuid has no range for user " + u.name, "usermod --add-subuids"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("error lacks %q:\n%s", want, r.out)
		}
	}
	if _, err := os.Stat(filepath.Join(u.home, ".local", "share", "strata")); err == nil {
		t.Errorf("a refused build created the store")
	}
}

// Without newuidmap in PATH the build names the package that has it.
func TestRootlessNoNewuidmap(t *testing.T) {
	u := newRootlessUser(t)
	ctx := filepath.Join(u.home, "proj")
	u.writeProject(t, ctx, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN true\n"})
	cmd := u.command([]string{"PATH=" + filepath.Join(u.home, "no-such-dir")}, "build", "--progress=plain", ctx)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "newuidmap not found in PATH: install the uidmap package") {
		t.Errorf("build without newuidmap: %v, want an error naming the uidmap package:\n%s", err, out)
	}
}

// unpackImage unpacks the layout's image tagged "1" as root with umoci, which keeps the owners.
func unpackImage(t *testing.T, layout string) string {
	const tag = "1"
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("umoci", "raw", "unpack", "--image", layout+":"+tag, rootfs).CombinedOutput(); err != nil {
		t.Fatalf("umoci raw unpack: %v\n%s", err, out)
	}
	return rootfs
}

// imageListing is "path uid:gid mode" for every entry of the image's filesystem (mode left out
// for symlinks), sorted.
func imageListing(t *testing.T, layout string) string {
	t.Helper()
	rootfs := unpackImage(t, layout)
	var lines []string
	err := filepath.Walk(rootfs, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == rootfs {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(rootfs, p)
		line := fmt.Sprintf("%s %d:%d", rel, st.Uid, st.Gid)
		if fi.Mode()&fs.ModeSymlink == 0 {
			line += fmt.Sprintf(" %04o", st.Mode&0o7777)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// checkOwnedOutsideStore fails for anything in the user's home, the store aside, that the user
// does not own: a rootless build writes elsewhere only as the user.
func checkOwnedOutsideStore(t *testing.T, u *rootlessUser, storeDir string) {
	t.Helper()
	err := filepath.Walk(u.home, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == storeDir {
			return filepath.SkipDir
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.uid || int(st.Gid) != u.gid {
			t.Errorf("%s is owned by %d:%d, not the user (%d:%d)", p, st.Uid, st.Gid, u.uid, u.gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rootOwnedOutside describes root's default store and run dir, which a rootless build must not
// create or touch.
func rootOwnedOutside(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"/var/lib/strata", "/run/strata"} {
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s: absent; ", p)
			continue
		}
		fmt.Fprintf(&b, "%s: %s; ", p, fi.ModTime())
	}
	return b.String()
}

// subIDs reads the user's first range from an /etc/sub?id file.
func subIDs(t *testing.T, file, name string) (start, count int) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ":")
		if len(parts) == 3 && parts[0] == name {
			start, _ = strconv.Atoi(parts[1])
			count, _ = strconv.Atoi(parts[2])
			return start, count
		}
	}
	t.Fatalf("%s has no range for %s", file, name)
	return 0, 0
}

// lineDiff lists the lines only in a (-) and only in b (+).
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for l := range ma {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range mb {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][2:] < out[j][2:] })
	return strings.Join(out, "\n")
}

// An owner beyond the user's subordinate ranges cannot exist in its namespace: a base layer or a
// COPY --chown naming one fails the build with what to change, rather than change the owner.
func TestRootlessIDsBeyondRange(t *testing.T) {
	u := newRootlessUser(t)
	e := newEnv(t)
	bigRef := testReg.Addr() + fmt.Sprintf("/rootless-bigid:%d", os.Getpid())
	e.build("--push", "-t", bigRef, e.project("big", map[string]string{
		"Dockerfile": "FROM {{BASE}}\nRUN touch /big && chown 70000:70000 /big\n",
	}))
	for name, df := range map[string]string{
		"layer": "FROM " + bigRef + "\nRUN true\n",
		"chown": "FROM {{BASE}}\nCOPY --chown=70000:70000 a.txt /a.txt\n",
	} {
		ctx := filepath.Join(u.home, name)
		u.writeProject(t, ctx, map[string]string{"Dockerfile": df, "a.txt": "a\n"})
		r := u.run(t, "build", "--progress=plain", ctx)
		if r.err == nil {
			t.Errorf("%s: build with owner 70000 succeeded:\n%s", name, r.out)
			continue
		}
		if !strings.Contains(r.out, "owner 70000:70000 is beyond the ids this rootless build maps") {
			t.Errorf("%s: error does not explain the unmapped owner:\n%s", name, r.out)
		}
	}
}

// A store on a nosuid,nodev mount (a CI volume, a home mounted so): in the user namespace those
// flags are locked, so a read-only remount must keep them. A single-layer image exported as
// type=local is mounted that way.
func TestRootlessStoreOnNosuidMount(t *testing.T) {
	u := newRootlessUser(t)
	if out, err := exec.Command("mount", "--bind", u.home, u.home).CombinedOutput(); err != nil {
		t.Skipf("bind mount: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", u.home).Run() })
	if out, err := exec.Command("mount", "-o", "remount,bind,nosuid,nodev", u.home).CombinedOutput(); err != nil {
		t.Fatalf("remount nosuid,nodev: %v: %s", err, out)
	}
	ctx := filepath.Join(u.home, "proj")
	u.writeProject(t, ctx, map[string]string{"Dockerfile": "FROM {{BASE}}\n"})
	dest := filepath.Join(u.home, "rootfs")
	if r := u.run(t, "build", "--progress=plain", "-o", "type=local,dest="+dest, ctx); r.err != nil {
		t.Fatalf("rootless build on a nosuid,nodev store: %v\n%s", r.err, r.out)
	}
	if _, err := os.Stat(filepath.Join(dest, "bin", "busybox")); err != nil {
		t.Errorf("type=local export lacks bin/busybox: %v", err)
	}
}

// SIGKILL of a rootless strata mid-RUN takes the whole namespace with it: no process of the user
// or its subordinate ids survives, and the next build (same store) succeeds.
func TestRootlessKillLeavesNothingBehind(t *testing.T) {
	u := newRootlessUser(t)
	ctx := filepath.Join(u.home, "proj")
	u.writeProject(t, ctx, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo started-rl-kill && sleep 300\n"})
	cmd := u.command([]string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin"}, "build", "--progress=plain", ctx)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, cmd, out, "the RUN step to start", func() bool {
		return strings.Contains(out.String(), "started-rl-kill") && len(userProcesses(t, u)) >= 4
	})
	if len(userProcesses(t, u)) < 4 {
		t.Fatalf("expected strata twice, runc and sleep among the user's processes, found %v", userProcesses(t, u))
	}
	cmd.Process.Kill()
	// Wait returns once nothing holds the output pipe: the namespace's processes must be gone.
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(15 * time.Second):
		t.Fatalf("15s after the kill the build's output is still open; processes: %v", userProcesses(t, u))
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(userProcesses(t, u)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if left := userProcesses(t, u); len(left) > 0 {
		t.Fatalf("processes survived the kill: %v", left)
	}
	ctx2 := filepath.Join(u.home, "proj2")
	u.writeProject(t, ctx2, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo again\n"})
	if r := u.run(t, "build", "--progress=plain", ctx2); r.err != nil {
		t.Fatalf("build after the kill: %v\n%s", r.err, r.out)
	}
}

// userProcesses lists "pid comm" of the processes running as the user or one of its subordinate
// uids.
func userProcesses(t *testing.T, u *rootlessUser) []string {
	t.Helper()
	subStart, subCount := subIDs(t, "/etc/subuid", u.name)
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil {
			continue
		}
		if uid := int(st.Uid); uid == u.uid || uid >= subStart && uid < subStart+subCount {
			comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
			out = append(out, e.Name()+" "+strings.TrimSpace(string(comm)))
		}
	}
	return out
}

// Inside an unprivileged container part of /proc is masked (a bind of /dev/null over
// /proc/keys, a read-only /proc/sys), and a user namespace may then not mount a new proc. Here a
// private mount namespace masks /proc the way Docker does: the build says what to change, and
// with --no-process-sandbox it succeeds, its RUN step seeing the processes around it.
func TestRootlessMaskedProc(t *testing.T) {
	testenv.RequireTools(t, "unshare", "setpriv")
	u := newRootlessUser(t)
	ctx := filepath.Join(u.home, "proj")
	u.writeProject(t, ctx, map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN ls /proc | grep -c '^[0-9]' > /nprocs\n"})
	build := func(extra string) result {
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
			"mount --bind /dev/null /proc/keys && mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && "+
				"exec setpriv --reuid="+strconv.Itoa(u.uid)+" --regid="+strconv.Itoa(u.gid)+" --init-groups "+
				"env -i HOME="+u.home+" PATH=/usr/bin:/bin:/usr/sbin:/sbin "+u.bin+" build --progress=plain "+extra+" -o type=local,dest="+u.home+"/out "+ctx)
		out, err := cmd.CombinedOutput()
		return result{out: string(out), err: err}
	}
	r := build("")
	if r.err == nil {
		t.Fatalf("build under a masked /proc succeeded without --no-process-sandbox (is /proc masked?):\n%s", r.out)
	}
	for _, want := range []string{"mount /proc: operation not permitted", "systempaths=unconfined", "--no-process-sandbox"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("error lacks %q:\n%s", want, r.out)
		}
	}
	r = build("--no-process-sandbox")
	if r.err != nil {
		t.Fatalf("build with --no-process-sandbox: %v\n%s", r.err, r.out)
	}
	// A pid namespace of its own would show the step's shell, ls, grep: a handful at most.
	n, _ := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(u.home, "out", "nprocs"))))
	if n < 10 {
		t.Errorf("RUN saw %d processes in /proc, want the shared pid namespace's (more than 10)", n)
	}
}

// Layers pulled by a rootless build are unpacked in the namespace: their whiteouts and opaque
// directories (user.overlay.opaque there) must hide what lower layers have, as under root.
func TestRootlessUnpackWhiteouts(t *testing.T) {
	u := newRootlessUser(t)
	e := newEnv(t)
	ref := testReg.Addr() + fmt.Sprintf("/rootless-whiteouts:%d", os.Getpid())
	e.build("--push", "-t", ref, e.project("wh", map[string]string{"Dockerfile": `FROM {{BASE}}
RUN mkdir -p /d /gone && touch /d/old /gone/x /file && chown 1234:5678 /d/old
RUN rm -rf /d /gone /file && mkdir /d && touch /d/new
`}))
	ctx := filepath.Join(u.home, "proj")
	u.writeProject(t, ctx, map[string]string{"Dockerfile": "FROM " + ref + `
RUN test ! -e /d/old && test ! -e /gone && test ! -e /file && test -e /d/new && ls -A /d > /d-list
`})
	r := u.run(t, "build", "--progress=plain", "-o", "type=local,dest="+filepath.Join(u.home, "out"), ctx)
	if r.err != nil {
		t.Fatalf("rootless build on a base with whiteouts and an opaque dir: %v\n%s", r.err, r.out)
	}
	if got := readFile(t, filepath.Join(u.home, "out", "d-list")); got != "new\n" {
		t.Errorf("/d holds %q, want only new", got)
	}
}

// RUN --mount works in the namespace: a file secret (on the namespace's private /dev/shm), a cache
// mount kept in the user's store between builds, and a bind of the context.
func TestRootlessRunMounts(t *testing.T) {
	u := newRootlessUser(t)
	ctx := filepath.Join(u.home, "proj")
	secret := filepath.Join(u.home, "token")
	u.writeProject(t, ctx, map[string]string{
		"Dockerfile": `FROM {{BASE}}
ARG N
RUN --mount=type=secret,id=tok --mount=type=cache,target=/cache,uid=1234 --mount=type=bind,target=/ctx \
    echo "$N" >> /cache/runs && cp /cache/runs /runs && wc -c < /run/secrets/tok > /secret-len \
    && cat /ctx/data > /data && stat -c %u /cache > /cache-owner
`,
		"data": "from-context\n",
	})
	u.writeProject(t, filepath.Dir(secret), map[string]string{"token": "s3cr3t"})
	// XDG_DATA_HOME moves the store, as the XDG spec says.
	xdg := filepath.Join(u.home, "xdg")
	for i, want := range []string{"1\n", "1\n2\n"} {
		out := filepath.Join(u.home, fmt.Sprintf("out%d", i))
		// An XDG_RUNTIME_DIR no session created, as su passes on: the run dir falls back to /tmp.
		cmd := u.command([]string{"XDG_DATA_HOME=" + xdg, "XDG_RUNTIME_DIR=/run/user/no-such-session", "PATH=/usr/bin:/bin:/usr/sbin:/sbin"},
			"build", "--progress=plain", "--secret", "id=tok,src="+secret, "--build-arg", fmt.Sprintf("N=%d", i+1), "-o", "type=local,dest="+out, ctx)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %d: %v\n%s", i+1, err, b)
		}
		// type=local gives the files to the user running the build, here the user itself.
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(out, "runs"), &st); err != nil || int(st.Uid) != u.uid {
			t.Errorf("build %d: exported /runs: %v, owner %d, want the user (%d)", i+1, err, st.Uid, u.uid)
		}
		for f, w := range map[string]string{"runs": want, "secret-len": "6\n", "data": "from-context\n", "cache-owner": "1234\n"} {
			if got := readFile(t, filepath.Join(out, f)); got != w {
				t.Errorf("build %d: /%s = %q, want %q", i+1, f, got, w)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(xdg, "strata", "cachemounts")); err != nil {
		t.Errorf("store not under $XDG_DATA_HOME/strata: %v", err)
	}
	if _, err := os.Stat(filepath.Join(u.home, ".local", "share", "strata")); err == nil {
		t.Errorf("store created under ~/.local/share although XDG_DATA_HOME is set")
	}
}

// containsLines reports whether every line of want is a line of s.
func containsLines(s, want string) bool {
	have := map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		have[l] = true
	}
	for _, l := range strings.Split(strings.TrimSuffix(want, "\n"), "\n") {
		if !have[l] {
			return false
		}
	}
	return true
}
