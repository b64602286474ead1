package users

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeRoot(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if group != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const passwd = `root:x:0:0:root:/root:/bin/sh
# comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
broken line
2000:x:3000:3000::/home/numeric:/bin/sh
`

const group = `root:x:0:
wheel:x:10:root,app
app:x:1000:
docker:x:999:daemon,app
staff:x:50:
`

func TestLookup(t *testing.T) {
	root := writeRoot(t, passwd, group)
	cases := []struct {
		spec string
		want Identity
	}{
		{"", Identity{UID: 0, GID: 0, Groups: []uint32{10}, Home: "/root"}},
		{"root", Identity{UID: 0, GID: 0, Groups: []uint32{10}, Home: "/root"}},
		{"0", Identity{UID: 0, GID: 0, Groups: []uint32{10}, Home: "/root"}},
		{"app", Identity{UID: 1000, GID: 1000, Groups: []uint32{10, 999}, Home: "/home/app"}},
		{"1000", Identity{UID: 1000, GID: 1000, Groups: []uint32{10, 999}, Home: "/home/app"}},
		{"app:staff", Identity{UID: 1000, GID: 50, Home: "/home/app"}},
		{"app:50", Identity{UID: 1000, GID: 50, Home: "/home/app"}},
		{"app:4242", Identity{UID: 1000, GID: 4242, Home: "/home/app"}},
		{"1234", Identity{UID: 1234, GID: 0}},
		{"1234:5678", Identity{UID: 1234, GID: 5678}},
		{"1234:docker", Identity{UID: 1234, GID: 999}},
		{":staff", Identity{UID: 0, GID: 50, Home: "/root"}},
		// A name that looks numeric matches by name first only when it comes first in the file.
		{"2000", Identity{UID: 3000, GID: 3000, Home: "/home/numeric"}},
		{"daemon", Identity{UID: 1, GID: 1, Groups: []uint32{999}, Home: "/usr/sbin"}},
		// An empty group is no group (libcontainer's GetExecUser, which BuildKit's RUN uses).
		{"daemon:", Identity{UID: 1, GID: 1, Groups: []uint32{999}, Home: "/usr/sbin"}},
	}
	for _, c := range cases {
		got, err := Lookup(root, c.spec)
		if err != nil {
			t.Errorf("Lookup(%q): %v", c.spec, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Lookup(%q) = %+v, want %+v", c.spec, got, c.want)
		}
	}
}

func TestLookupErrors(t *testing.T) {
	root := writeRoot(t, passwd, group)
	cases := map[string]string{
		"nobody":           "unable to find user nobody: no matching entries in passwd file",
		"app:nogroup":      "unable to find group nogroup: no matching entries in group file",
		"99999999999":      "out of range",
		"4294967295":       "out of range",
		"1000:99999999999": "out of range",
	}
	for spec, want := range cases {
		_, err := Lookup(root, spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup(%q) error = %v, want containing %q", spec, err, want)
		}
	}
}

func TestLookupNoFiles(t *testing.T) {
	root := t.TempDir()
	got, err := Lookup(root, "1000:1000")
	if err != nil || !reflect.DeepEqual(got, Identity{UID: 1000, GID: 1000}) {
		t.Fatalf("numeric lookup without passwd = %+v, %v", got, err)
	}
	got, err = Lookup(root, "")
	if err != nil || !reflect.DeepEqual(got, Identity{}) {
		t.Fatalf("default lookup without passwd = %+v, %v", got, err)
	}
	if _, err := Lookup(root, "app"); err == nil || !strings.Contains(err.Error(), "unable to find user app") {
		t.Fatalf("named lookup without passwd: %v", err)
	}
}

// An image must not be able to point /etc/passwd at a host file.
func TestLookupSymlinkStaysInRoot(t *testing.T) {
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "passwd"), []byte("evil:x:4242:4242::/evil:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Absolute and ../ escapes both resolve inside root, where nothing exists.
	if err := os.Symlink(filepath.Join(host, "passwd"), filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(filepath.Join(root, "etc"), filepath.Join(host, "passwd"))
	if err := os.Symlink(rel, filepath.Join(root, "etc/group")); err != nil {
		t.Fatal(err)
	}
	if _, err := Lookup(root, "evil"); err == nil {
		t.Fatal("Lookup followed /etc/passwd symlink out of rootfs")
	}

	// A symlink that stays inside the root is followed, as in the image.
	inside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(inside, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(inside, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(inside, "usr/lib/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/lib/passwd", filepath.Join(inside, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	got, err := Lookup(inside, "app")
	if err != nil || got.UID != 1000 {
		t.Fatalf("Lookup through in-root symlink = %+v, %v", got, err)
	}
}

// TestOwner follows BuildKit's file-operation owner resolution (client/llb WithUser and the
// solver's readUser), exercised by its testCopyChown, testCopyChownCreateDest and
// testWorkdirUser.
func TestOwner(t *testing.T) {
	root := writeRoot(t, passwd+"svc:x:1500:1600::/:/bin/sh\nsvc:x:1501:1601::/:/bin/sh\n", group)
	cases := []struct {
		spec     string
		uid, gid uint32
	}{
		{"123", 123, 123},             // numeric user: the group is the same number
		{"1000", 1000, 1000},          // numeric users never read /etc/passwd
		{"2000", 2000, 2000},          // not the passwd entry named "2000" either
		{"app", 1000, 1000},           // a name takes its primary group
		{"svc", 1500, 1600},           // the first entry with the name wins
		{"root", 0, 0},                // "root" is 0 without reading /etc/passwd
		{"nosuchuser", 0, 0},          // unknown names fall back to root
		{"123:456", 123, 456},         // numeric group
		{"123:staff", 123, 50},        // group by name
		{"123:nosuchgroup", 123, 123}, // unknown group keeps the user part's gid
		{"svc:nosuchgroup", 1500, 1600},
		{"nosuchuser:staff", 0, 50},
		{"svc:root", 1500, 0},
		{":staff", 0, 50},
		{"app:", 1000, 0},     // an empty group is ID 0 in llb (conformance case copy-chown-expand)
		{"99999999999", 0, 0}, // too big for BuildKit's int32 parse: a name, and an unknown one
	}
	for _, c := range cases {
		uid, gid, err := Owner(root, c.spec)
		if err != nil || uid != c.uid || gid != c.gid {
			t.Errorf("Owner(%q) = %d:%d, %v; want %d:%d", c.spec, uid, gid, err, c.uid, c.gid)
		}
	}
	if _, _, err := Owner(root, "-1"); err == nil {
		t.Error("Owner(-1) accepted a negative id")
	}
	// No passwd or group file (scratch): names fall back to root, numbers work.
	empty := t.TempDir()
	for spec, want := range map[string][2]uint32{"app": {0, 0}, "5:app": {5, 5}, "7": {7, 7}} {
		uid, gid, err := Owner(empty, spec)
		if err != nil || uid != want[0] || gid != want[1] {
			t.Errorf("scratch Owner(%q) = %d:%d, %v; want %v", spec, uid, gid, err, want)
		}
	}
}
