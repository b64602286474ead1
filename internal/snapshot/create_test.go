package snapshot

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// createLayer is a layer whose entries exercise what Unpack leaves to the kernel at creation
// (owner, permission bits) and what it must set itself: umask-sensitive modes, set-id and sticky
// bits, owners other than ours, a set-gid directory whose group new files inherit, xattrs,
// nanosecond times, hardlinks, devices and directory times.
func createLayer(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	ns := testTime.Add(123456789 * time.Nanosecond)
	put := func(h *tar.Header, body string) {
		if h.ModTime.IsZero() {
			h.ModTime = testTime
		}
		h.Format = tar.FormatPAX
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	reg := func(name string, mode int64, uid, gid int, body string) {
		put(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Uid: uid, Gid: gid}, body)
	}
	put(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	put(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: ns}, "")
	reg("etc/plain", 0o644, 0, 0, "plain")
	reg("etc/group-write", 0o664, 0, 0, "gw")
	reg("etc/world-write", 0o666, 0, 0, "ww")
	reg("etc/secret", 0o600, 1000, 1000, "s")
	reg("etc/other-uid", 0o644, 5, 0, "u")
	reg("etc/other-gid", 0o644, 0, 5, "g")
	reg("etc/none", 0o000, 0, 0, "n")
	put(&tar.Header{Name: "etc/nanos", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: ns, AccessTime: ns.Add(time.Second)}, "t")
	put(&tar.Header{Name: "etc/xattr", Typeflag: tar.TypeReg, Mode: 0o644, PAXRecords: map[string]string{paxXattrPrefix + "user.note": "hi"}}, "x")
	put(&tar.Header{Name: "etc/hard", Typeflag: tar.TypeLink, Linkname: "etc/plain"}, "")
	put(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	reg("bin/su", 0o4755, 0, 0, "#!/bin/sh\n")
	reg("bin/sg", 0o2755, 0, 42, "#!/bin/sh\n")
	reg("bin/exe", 0o755, 0, 0, "#!/bin/sh\n")
	put(&tar.Header{Name: "shared/", Typeflag: tar.TypeDir, Mode: 0o2775, Gid: 50}, "")
	reg("shared/theirs", 0o644, 0, 50, "inherits the group")
	reg("shared/ours", 0o644, 0, 0, "must be chowned back")
	put(&tar.Header{Name: "shared/link", Typeflag: tar.TypeSymlink, Linkname: "ours", Mode: 0o777}, "")
	put(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, "")
	put(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "etc/plain", Mode: 0o777}, "")
	put(&tar.Header{Name: "owned-link", Typeflag: tar.TypeSymlink, Linkname: "etc/plain", Mode: 0o777, Uid: 7, Gid: 8}, "")
	put(&tar.Header{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755}, "")
	put(&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, "")
	put(&tar.Header{Name: "dev/fifo", Typeflag: tar.TypeFifo, Mode: 0o640}, "")
	reg("implicit/parent/file", 0o644, 0, 0, "below a directory the tar never names")
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestUnpackMatchesGNUTar unpacks the same layer with Unpack and with GNU tar (owners and
// permissions preserved) under several umasks: the trees must be identical, so the owners and
// modes Unpack leaves to file creation are the ones a full chown + chmod would give.
func TestUnpackMatchesGNUTar(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("needs GNU tar")
	}
	data := createLayer(t)
	for _, mask := range []int{0o022, 0o077, 0o000, 0o002} {
		t.Run(fmtOctal(mask), func(t *testing.T) {
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			ours, theirs := t.TempDir(), t.TempDir()
			if err := Unpack(bytes.NewReader(data), ours); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("tar", "--numeric-owner", "--same-owner", "--same-permissions", "--xattrs",
				"--xattrs-include=user.*", "-xf", "-", "-C", theirs)
			cmd.Stdin = bytes.NewReader(data)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tar: %v: %s", err, out)
			}
			got, want := treeState(t, ours), treeState(t, theirs)
			// Missing parents are made 0755 less the umask by both, except that GNU tar starts
			// from 0777: not what this test is about.
			for _, k := range []string{"implicit", "implicit/parent"} {
				delete(got, k)
				delete(want, k)
			}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("%s:\n unpack %s\n tar    %s", k, got[k], w)
				}
			}
			if len(got) != len(want) {
				t.Errorf("unpack made %d entries, tar %d", len(got), len(want))
			}
			// treeState compares seconds; the descriptor-based utimensat must keep nanoseconds.
			for _, rel := range []string{"etc/nanos", "etc"} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(ours, rel), &st); err != nil {
					t.Fatal(err)
				}
				if st.Mtim.Nsec != 123456789 {
					t.Errorf("%s mtime nsec = %d, want 123456789", rel, st.Mtim.Nsec)
				}
			}
		})
	}
}

func fmtOctal(m int) string {
	return "umask" + string(rune('0'+m>>6&7)) + string(rune('0'+m>>3&7)) + string(rune('0'+m&7))
}

// TestUnpackDefaultACL: below a directory with a default ACL the umask does not apply, the ACL
// does; a file must still get exactly its header's mode.
func TestUnpackDefaultACL(t *testing.T) {
	needRoot(t)
	// A default ACL u::rw-,g::---,o::--- in the kernel's xattr format (version 2, then tag,
	// permissions, id per entry): new files would be created 0600 whatever the umask.
	acl := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct{ tag, perm uint16 }{{0x01, 6}, {0x04, 0}, {0x20, 0}} {
		acl = binary.LittleEndian.AppendUint16(acl, e.tag)
		acl = binary.LittleEndian.AppendUint16(acl, e.perm)
		acl = binary.LittleEndian.AppendUint32(acl, 0xffffffff)
	}
	d := t.TempDir()
	aclDir := dir("acl/")
	aclDir.xattrs = map[string]string{aclDefaultXattr: string(acl)}
	if err := unix.Setxattr(d, aclDefaultXattr, acl, 0); err != nil {
		t.Skipf("no ACL support here: %v", err)
	}
	if err := unix.Removexattr(d, aclDefaultXattr); err != nil {
		t.Fatal(err)
	}
	unpackEnts(t, d, aclDir, file("acl/f", "x"), file("acl/g", "y"))
	for _, rel := range []string{"acl/f", "acl/g"} {
		fi, err := os.Lstat(filepath.Join(d, rel))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %o, want 644", rel, fi.Mode().Perm())
		}
	}
}

// TestUnpackDirReplacedByFile: a directory with a header, replaced by a later file or whiteout,
// leaves no header behind whose times finishDirs would try to set on the new entry.
func TestUnpackDirReplacedByFile(t *testing.T) {
	needRoot(t)
	d := t.TempDir()
	unpackEnts(t, d, dir("a/"), file("a/x", "1"), file("a", "file"),
		dir("b/"), dir("b/c/"), ent{name: ".wh.b", typ: tar.TypeReg})
	if b, err := os.ReadFile(filepath.Join(d, "a")); err != nil || string(b) != "file" {
		t.Errorf("a = %q, %v", b, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(d, "b"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
		t.Errorf("b is not a whiteout: mode %o, %v", st.Mode, err)
	}
}
