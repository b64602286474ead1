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
		"app:":             "empty group",
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
