package snapshot

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMountDiffRoundTrip makes every kind of change in a mounted overlay, checks the exact tar Diff
// writes, and checks that unpacking that tar as a new layer reproduces the merged view.
func TestMountDiffRoundTrip(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	lower1, lower2 := filepath.Join(base, "l1"), filepath.Join(base, "l2")
	upper, work, merged := filepath.Join(base, "up"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	mkdirs(t, lower1, lower2, upper, work, merged)
	tool := file("bin/tool", "#!/bin/sh\n")
	tool.mode = 0o755
	unpackEnts(t, lower1,
		dir("bin/"), tool, dir("etc/"), file("etc/a.conf", "a"), file("etc/b.conf", "b"),
		dir("data/"), file("data/x", "x"), dir("data/sub/"), file("data/sub/y", "y"),
		file("keep", "k"), file("old-name", "renamed"),
	)
	unpackEnts(t, lower2, dir("etc/"), file("etc/c.conf", "c"), ent{name: "etc/.wh.b.conf", typ: tar.TypeReg})

	lowers := []string{lower2, lower1}
	mustMount(t, lowers, upper, work, merged)
	// mountinfo lists these only when they differ from the module defaults, so "off" may be absent.
	opts := mountOptions(t, merged)
	for _, o := range []string{"index=on", "redirect_dir=on", "redirect_dir=follow", "metacopy=on"} {
		if strings.Contains(opts, o) {
			t.Errorf("mount options %q have %s", opts, o)
		}
	}
	if _, err := os.Stat(filepath.Join(merged, "etc/b.conf")); !os.IsNotExist(err) {
		t.Fatalf("whiteout in lower2 did not hide etc/b.conf: %v", err)
	}
	m := func(p string) string { return filepath.Join(merged, p) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(m("new.txt"), []byte("new"), 0o640))
	must(unix.Setxattr(m("new.txt"), "user.color", []byte("blue"), 0))
	must(os.Link(m("new.txt"), m("new-link")))
	must(os.Symlink("new.txt", m("sl")))
	must(os.WriteFile(m("etc/a.conf"), []byte("modified"), 0o644))
	must(os.Chmod(m("bin/tool"), 0o700))
	must(os.Remove(m("keep")))
	must(os.RemoveAll(m("data")))
	must(os.MkdirAll(m("data"), 0o755))
	must(os.WriteFile(m("data/z"), []byte("z"), 0o644))
	must(os.Rename(m("old-name"), m("new-name")))
	want := treeState(t, merged)
	must(Unmount(merged))

	var buf bytes.Buffer
	res, err := Diff(upper, &buf)
	must(err)
	got := readTar(t, buf.Bytes())
	var names []string
	for _, e := range got {
		desc := fmt.Sprintf("%s %c", e.hdr.Name, e.hdr.Typeflag)
		if e.hdr.Typeflag == tar.TypeLink {
			desc += " -> " + e.hdr.Linkname
		}
		names = append(names, desc)
		if e.hdr.Uname != "" || e.hdr.Gname != "" || !e.hdr.AccessTime.IsZero() || !e.hdr.ChangeTime.IsZero() {
			t.Errorf("%s: names or atime/ctime in header: %+v", e.hdr.Name, e.hdr)
		}
		for k := range e.hdr.PAXRecords {
			if strings.Contains(k, "trusted.overlay") {
				t.Errorf("%s: overlay xattr leaked: %s", e.hdr.Name, k)
			}
		}
	}
	wantNames := []string{
		".wh.keep 0",
		".wh.old-name 0",
		"bin/ 5",
		"bin/tool 0",
		"data/ 5",
		"data/.wh..wh..opq 0",
		"data/z 0",
		"etc/ 5",
		"etc/a.conf 0",
		"new-link 0",
		"new-name 0",
		"new.txt 1 -> new-link",
		"sl 2",
	}
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("diff entries:\n got %q\nwant %q", names, wantNames)
	}
	if res.Entries != len(wantNames) || res.Empty {
		t.Errorf("result %+v", res)
	}
	byName := map[string]tarEntry{}
	for _, e := range got {
		byName[e.hdr.Name] = e
	}
	if e := byName["bin/tool"]; e.hdr.Mode != 0o700 || e.body != "#!/bin/sh\n" {
		t.Errorf("bin/tool: mode %o body %q", e.hdr.Mode, e.body)
	}
	if e := byName["new-link"]; e.body != "new" || e.hdr.PAXRecords[paxXattrPrefix+"user.color"] != "blue" || e.hdr.Mode != 0o640 {
		t.Errorf("new-link: %+v body %q", e.hdr, e.body)
	}
	if e := byName[".wh.keep"]; e.hdr.Size != 0 || e.hdr.Typeflag != tar.TypeReg {
		t.Errorf("whiteout entry: %+v", e.hdr)
	}

	// Round trip: the tar as a third layer under a read-only overlay equals the merged view.
	layer3 := filepath.Join(base, "l3")
	mkdirs(t, layer3)
	must(Unpack(bytes.NewReader(buf.Bytes()), layer3))
	ro := filepath.Join(base, "ro")
	mkdirs(t, ro)
	mustMount(t, []string{layer3, lower2, lower1}, "", "", ro)
	if again := treeState(t, ro); !reflect.DeepEqual(again, want) {
		t.Errorf("round trip differs:\n%s", diffStates(want, again))
	}
	if err := os.WriteFile(filepath.Join(ro, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into read-only overlay: %v", err)
	}
	must(Unmount(ro))

	// The unpacked layer diffs back to the same bytes: Diff output is a fixed point.
	var again bytes.Buffer
	res2, err := Diff(layer3, &again)
	must(err)
	if !bytes.Equal(again.Bytes(), buf.Bytes()) || res2.ContentID != res.ContentID {
		t.Errorf("Diff(Unpack(Diff(upper))) differs from Diff(upper)")
	}
}

// TestOverlayOptionsAccepted guards against Mount silently dropping an option this kernel knows
// (Mount skips options the kernel rejects).
func TestOverlayOptionsAccepted(t *testing.T) {
	needRoot(t)
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		t.Skipf("no new mount API: %v", err)
	}
	defer unix.Close(fd)
	for _, opt := range overlayOptions {
		if err := unix.FsconfigSetString(fd, opt[0], opt[1]); err != nil {
			t.Errorf("%s=%s: %v (%s)", opt[0], opt[1], err, fsLog(fd))
		}
	}
}

// mountOptions returns the super options of the mount at target from /proc/self/mountinfo.
func mountOptions(t *testing.T, target string) string {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == target {
			return f[len(f)-1]
		}
	}
	t.Fatalf("%s not in mountinfo", target)
	return ""
}

func diffStates(want, got map[string]string) string {
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var b strings.Builder
	for _, k := range sorted {
		if want[k] != got[k] {
			fmt.Fprintf(&b, "%s\n  want %q\n  got  %q\n", k, want[k], got[k])
		}
	}
	return b.String()
}

func TestContentID(t *testing.T) {
	needRoot(t)
	build := func(mutate func(dir string)) (DiffResult, []byte) {
		t.Helper()
		d := t.TempDir()
		mkdirs(t, filepath.Join(d, "a/b"))
		for _, f := range []string{"a/one", "a/b/two", "three"} {
			if err := os.WriteFile(filepath.Join(d, f), []byte("content of "+f), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := unix.Mknod(filepath.Join(d, "gone"), unix.S_IFCHR, 0); err != nil {
			t.Fatal(err)
		}
		if mutate != nil {
			mutate(d)
		}
		var buf bytes.Buffer
		res, err := Diff(d, &buf)
		if err != nil {
			t.Fatal(err)
		}
		return res, buf.Bytes()
	}
	touch := func(d string) {
		when := time.Now().Add(-48 * time.Hour)
		filepath.Walk(d, func(p string, _ os.FileInfo, _ error) error {
			return unix.Lutimes(p, []unix.Timeval{unix.NsecToTimeval(when.UnixNano()), unix.NsecToTimeval(when.UnixNano())})
		})
	}
	base, baseTar := build(nil)
	if base.Empty || base.Entries != 6 {
		t.Errorf("base result %+v", base)
	}
	touched, touchedTar := build(touch)
	if touched.ContentID != base.ContentID {
		t.Error("mtime changed the ContentID")
	}
	if bytes.Equal(touchedTar, baseTar) {
		t.Error("mtimes are not kept in the tar")
	}
	for name, mutate := range map[string]func(string){
		"mode":    func(d string) { os.Chmod(filepath.Join(d, "a/one"), 0o600) },
		"content": func(d string) { os.WriteFile(filepath.Join(d, "three"), []byte("content of THREE"), 0o644) },
		"owner":   func(d string) { os.Lchown(filepath.Join(d, "a/b/two"), 1, 1) },
		"xattr":   func(d string) { unix.Setxattr(filepath.Join(d, "three"), "user.x", []byte("1"), 0) },
		"name":    func(d string) { os.Rename(filepath.Join(d, "three"), filepath.Join(d, "four")) },
		"opaque":  func(d string) { unix.Setxattr(filepath.Join(d, "a"), xattrOpaque, []byte("y"), 0) },
		"dirmode": func(d string) { os.Chmod(filepath.Join(d, "a/b"), 0o700) },
	} {
		if r, _ := build(mutate); r.ContentID == base.ContentID {
			t.Errorf("%s change kept the ContentID", name)
		}
	}
	empty, err := Diff(t.TempDir(), io.Discard)
	if err != nil || !empty.Empty || empty.Entries != 0 {
		t.Errorf("empty upper: %+v, %v", empty, err)
	}
}

func TestDiffRefusesRedirect(t *testing.T) {
	needRoot(t)
	d := t.TempDir()
	mkdirs(t, filepath.Join(d, "moved"))
	if err := unix.Setxattr(filepath.Join(d, "moved"), "trusted.overlay.redirect", []byte("/orig"), 0); err != nil {
		t.Fatal(err)
	}
	_, err := Diff(d, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), "moved") {
		t.Fatalf("want an error naming the redirect and the path, got %v", err)
	}
}

// manyLowers creates n lowers whose paths together are far beyond one page of mount options; each has
// its own file, and "shared" says which lower it came from.
func manyLowers(t *testing.T, n int) []string {
	long := filepath.Join(t.TempDir(), strings.Repeat("deep-directory-name-", 6))
	lowers := make([]string, n)
	for i := range lowers {
		lowers[i] = filepath.Join(long, fmt.Sprintf("%s-layer-%03d", strings.Repeat("x", 80), i), "fs")
		mkdirs(t, lowers[i])
		for name, body := range map[string]string{fmt.Sprintf("f%03d", i): "x", "shared": fmt.Sprint(i)} {
			if err := os.WriteFile(filepath.Join(lowers[i], name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if total := len(strings.Join(lowers, ":")); total < 8*4096 {
		t.Fatalf("lower paths only %d bytes; test needs them to overflow a page", total)
	}
	return lowers
}

func checkManyLowers(t *testing.T, merged string, n int) {
	t.Helper()
	ents, err := os.ReadDir(merged)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n+1 {
		t.Errorf("merged has %d entries, want %d", len(ents), n+1)
	}
	if b, _ := os.ReadFile(filepath.Join(merged, "shared")); string(b) != "0" {
		t.Errorf("shared = %q, want the top-most lower's", b)
	}
}

func TestMountManyLowers(t *testing.T) {
	needRoot(t)
	const n = 250
	lowers := manyLowers(t, n)
	for _, tc := range []struct {
		name  string
		mount func(lowers []string, upper, work, target string) error
	}{
		{"Mount", Mount},
		{"newAPI", mountNewAPI},
		{"legacy", mountLegacy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			upper, work, merged, ro := filepath.Join(base, "up"), filepath.Join(base, "w"), filepath.Join(base, "m"), filepath.Join(base, "ro")
			mkdirs(t, upper, work, merged, ro)

			if err := tc.mount(lowers, "", "", ro); err != nil {
				t.Fatal(err)
			}
			checkManyLowers(t, ro, n)
			if err := Unmount(ro); err != nil {
				t.Fatal(err)
			}

			if err := tc.mount(lowers, upper, work, merged); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = unix.Unmount(merged, unix.MNT_DETACH) })
			checkManyLowers(t, merged, n)
			if err := os.Remove(filepath.Join(merged, "f100")); err != nil {
				t.Fatal(err)
			}
			if err := Unmount(merged); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := Diff(upper, &buf); err != nil {
				t.Fatal(err)
			}
			if got := readTar(t, buf.Bytes()); len(got) != 1 || got[0].hdr.Name != ".wh.f100" {
				t.Errorf("diff after deleting one lower file: %v", got)
			}
		})
	}
}

func TestMountReadOnlyAndDegenerate(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	lower, upper, work, target := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "t")
	mkdirs(t, lower, upper, work, target)
	unpackEnts(t, lower, file("hello", "world"))

	// One lower, no upper: read-only bind.
	mustMount(t, []string{lower}, "", "", target)
	if b, err := os.ReadFile(filepath.Join(target, "hello")); err != nil || string(b) != "world" {
		t.Errorf("read through bind: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into read-only bind: %v", err)
	}
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}

	// No lowers with an upper: writes land in upper.
	mustMount(t, nil, upper, work, target)
	if err := os.WriteFile(filepath.Join(target, "x"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(upper, "x")); err != nil {
		t.Errorf("write did not land in upper: %v", err)
	}

	if err := Mount(nil, "", "", target); err == nil {
		t.Error("mount of nothing succeeded")
	}
	if err := Unmount(target); err == nil {
		t.Error("unmount of a non-mount succeeded")
	}
}

func TestUnmountBusy(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	lower, target := filepath.Join(base, "l"), filepath.Join(base, "t")
	mkdirs(t, lower, target)
	mustMount(t, []string{lower}, "", "", target)
	f, err := os.Open(target) // an open directory keeps the mount busy
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if err := Unmount(target); err != nil {
		t.Fatalf("busy mount was not detached: %v", err)
	}
	if time.Since(start) < 500*time.Millisecond {
		t.Errorf("gave up on the busy mount after %v", time.Since(start))
	}
	var st unix.Stat_t
	var pst unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(base, &pst); err != nil {
		t.Fatal(err)
	}
	if st.Dev != pst.Dev {
		t.Error("target still a mount point after Unmount")
	}
}

func BenchmarkDiff(b *testing.B) {
	needRoot(b)
	upper := b.TempDir()
	body := bytes.Repeat([]byte("strata layer benchmark content\n"), 128) // ~4 KiB
	for d := 0; d < 20; d++ {
		dir := filepath.Join(upper, fmt.Sprintf("dir%02d", d))
		mkdirs(b, dir)
		for f := 0; f < 100; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%03d", f)), body, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		res, err := Diff(upper, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		if res.Entries != 2020 {
			b.Fatalf("entries = %d", res.Entries)
		}
	}
}

func BenchmarkUnpack(b *testing.B) {
	needRoot(b)
	body := strings.Repeat("strata layer benchmark content\n", 128)
	var ents []ent
	for d := 0; d < 20; d++ {
		ents = append(ents, dir(fmt.Sprintf("usr/lib/dir%02d/", d)))
		for f := 0; f < 100; f++ {
			ents = append(ents, file(fmt.Sprintf("usr/lib/dir%02d/file%03d", d, f), body))
		}
	}
	data := makeTar(b, ents...)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		d, err := os.MkdirTemp(b.TempDir(), "layer")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := Unpack(bytes.NewReader(data), d); err != nil {
			b.Fatal(err)
		}
	}
}

// Diff streams entries in the order a sort of every key gives, although it never holds the whole
// list: names where '-' or '.' sort before '/' interleave a directory's subtree with its
// siblings ("a", "a-b", "a.c/x", "a/x"), and whiteouts and opaque markers sort by their tar names.
func TestDiffOrderMatchesFullSort(t *testing.T) {
	d := t.TempDir()
	for _, p := range []string{"a/x/y", "a-b/z", "a.c/x", "a0", "b/.keep", "a/x-1", "a/x.0/q", "op/k"} {
		if err := os.MkdirAll(filepath.Join(d, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range []string{"a/gone", "a-", "b/.wh"} {
		if err := unix.Mknod(filepath.Join(d, w), unix.S_IFCHR, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Setxattr(filepath.Join(d, "op"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("trusted xattrs unavailable: %v", err)
	}
	var buf bytes.Buffer
	res, err := Diff(d, &buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name)
	}
	// The keys are the names without a directory's trailing slash, the marker keyed "op/\x00".
	keys := make([]string, len(got))
	for i, n := range got {
		keys[i] = strings.TrimSuffix(strings.Replace(n, "/"+whiteoutOpaque, "/\x00", 1), "/")
	}
	if !sort.StringsAreSorted(keys) {
		t.Errorf("entries not in key order: %q", got)
	}
	if res.Entries != len(got) || len(got) != 19 {
		t.Errorf("%d entries written, result says %d, want 19: %q", len(got), res.Entries, got)
	}
}
