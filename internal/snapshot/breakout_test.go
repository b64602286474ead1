package snapshot

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUnpackContainerdBreakouts ports containerd's pkg/archive TestBreakouts (v2.3.6 tar_test.go).
// Cases already in TestUnpackHostile are left out: SymlinkAbsolute ("symlink to outside then
// child"), HardlinkAbsolute ("hardlink via symlink") and HardlinkDirectRelative ("hardlink out").
//
// containerd resolves symlinks inside the root while applying; Unpack instead refuses any entry
// below a symlink, so where containerd's validator checks an in-root result, a case here may
// expect an error. What both must share is that nothing outside the root changes.
//
// A port that aimed at /etc would damage the host if Unpack were broken, so the escapes are aimed
// at sentinels: absolute link targets are rebased onto the sandbox, and the layer sits deep enough
// below the sandbox that every relative climb in these cases lands on a sentinel "etc" there.
//
// containerd's "apply" step (a state below the tar) becomes a lower layer built with plain file
// calls, since strata unpacks each layer into its own directory and overlayfs merges them.
func TestUnpackContainerdBreakouts(t *testing.T) {
	needRoot(t)
	type tc struct {
		name string
		// lower builds the state under the tar, nil for none; it runs with the lower dir and the
		// sandbox path.
		lower func(t *testing.T, dir, sb string)
		ents  func(sb string) []ent
		// wantErr: Unpack must refuse the tar. Otherwise check inspects the result (the layer dir,
		// or the overlay of the layer over lower).
		wantErr bool
		check   func(t *testing.T, root, sb string)
	}
	etcPasswd := func() []ent { return []ent{dir("etc/"), file("etc/passwd", "inside")} }
	cases := []tc{
		{name: "SymlinkUpAndOut", wantErr: true, ents: func(sb string) []ent {
			return []ent{dir("etc/"), dir("dummy/"), symlink("localetc", sb+"/dummy/../etc"), file("/localetc/unbroken", "pwned")}
		}},
		{name: "SymlinkMultipleAbsolute", wantErr: true, ents: func(sb string) []ent {
			return []ent{dir("etc/"), dir("dummy/"), symlink("/dummy/etc", sb+"/etc"), symlink("localetc", sb+"/dummy/etc"), file("/dummy/etc/unbroken", "pwned")}
		}},
		{name: "SymlinkMultipleRelative", wantErr: true, ents: func(sb string) []ent {
			return []ent{dir("etc/"), dir("dummy/"), symlink("/dummy/etc", sb+"/etc"), symlink("localetc", "./dummy/etc"), file("/dummy/etc/unbroken", "pwned")}
		}},
		{name: "SymlinkEmptyFile", wantErr: true, ents: func(sb string) []ent {
			return []ent{dir("etc/"), file("etc/emptied", "notempty"), symlink("localetc", sb+"/etc"), file("/localetc/emptied", "")}
		}},
		{name: "HardlinkRelative", wantErr: true, ents: func(string) []ent {
			return append(etcPasswd(), dir("breakouts/"), symlink("breakouts/d1", "../../etc"), hardlink("breakouts/mypasswd", "/breakouts/d1/passwd"))
		}},
		{name: "HardlinkDownAndOut", wantErr: true, ents: func(string) []ent {
			return append(etcPasswd(), dir("breakouts/"), dir("downandout/"), symlink("breakouts/d1", "../downandout/../../etc"), hardlink("breakouts/mypasswd", "/breakouts/d1/passwd"))
		}},
		{name: "HardlinkRelativeLong", wantErr: true, ents: func(string) []ent {
			return append(etcPasswd(), symlink("localetc", "../../../../../../../etc"), hardlink("localpasswd", "/localetc/passwd"))
		}},
		{name: "HardlinkRelativeUpAndOut", wantErr: true, ents: func(string) []ent {
			return append(etcPasswd(), symlink("localetc", "upandout/../../../etc"), hardlink("localpasswd", "/localetc/passwd"))
		}},
		{name: "HardlinkDirectAbsolute", ents: func(sb string) []ent {
			// Rebased: the tar carries the sandbox path too, so the in-root link has a target.
			return []ent{dir("etc/"), file(sb+"/etc/passwd", "inside"), hardlink("localpasswd", sb+"/etc/passwd")}
		}, check: func(t *testing.T, root, sb string) { sameInode(t, root, "localpasswd", sb+"/etc/passwd") }},
		{name: "SymlinkParentDirectory", wantErr: true, ents: func(sb string) []ent {
			return append(etcPasswd(), symlink("..", sb+"/etc/"), hardlink("localpasswd", "/etc/passwd"))
		}},
		{name: "SymlinkEmptyFilename", wantErr: true, ents: func(sb string) []ent {
			return append(etcPasswd(), symlink("", sb+"/etc/"), hardlink("localpasswd", "/etc/passwd"))
		}},
		{name: "SymlinkParentRelative", wantErr: true, ents: func(sb string) []ent {
			return append(etcPasswd(), symlink("localetc/sub/..", sb+"/etc/"), hardlink("/localetc/localpasswd", "/etc/passwd"))
		}},
		{name: "SymlinkSlashEnded", ents: func(string) []ent {
			return append(etcPasswd(), dir("localetc/"), hardlink("/localetc/localpasswd", "/etc/passwd"))
		}, check: func(t *testing.T, root, _ string) { sameInode(t, root, "localetc/localpasswd", "etc/passwd") }},
		{name: "SymlinkOverrideDirectory", wantErr: true,
			lower: func(t *testing.T, d, _ string) {
				writeState(t, d, "etc/passwd", "inside")
				mkdirs(t, filepath.Join(d, "localetc"))
			},
			ents: func(sb string) []ent {
				return []ent{symlink("localetc", sb+"/etc"), hardlink("/localetc/localpasswd", "/etc/passwd")}
			}},
		{name: "SymlinkOverrideDirectoryRelative", wantErr: true,
			lower: func(t *testing.T, d, _ string) {
				writeState(t, d, "etc/passwd", "inside")
				mkdirs(t, filepath.Join(d, "localetc"))
			},
			ents: func(string) []ent {
				return []ent{symlink("localetc", "../../etc"), hardlink("/localetc/localpasswd", "/etc/passwd")}
			}},
		{name: "DirectoryOverrideSymlink", wantErr: true, // the link target lives in another layer
			lower: func(t *testing.T, d, sb string) {
				writeState(t, d, "etc/passwd", "inside")
				mustSymlink(t, sb+"/etc", filepath.Join(d, "localetc"))
			},
			ents: func(string) []ent { return []ent{dir("/localetc/"), hardlink("/localetc/localpasswd", "/etc/passwd")} }},
		{name: "DirectoryOverrideSymlinkAndHardlink",
			lower: func(t *testing.T, d, _ string) {
				writeState(t, d, "etc/passwd", "inside")
				mustSymlink(t, "etc", filepath.Join(d, "localetc"))
				if err := os.Link(filepath.Join(d, "etc/passwd"), filepath.Join(d, "etc/localpasswd")); err != nil {
					t.Fatal(err)
				}
			},
			ents: func(string) []ent { return []ent{dir("/localetc/"), file("/localetc/localpasswd", "different")} },
			check: func(t *testing.T, root, _ string) {
				wantBody(t, root, "localetc/localpasswd", "different")
				wantBody(t, root, "etc/passwd", "inside")
				wantBody(t, root, "etc/localpasswd", "inside")
			}},
		{name: "WhiteoutRootParent", wantErr: true, lower: lowerEtc,
			ents: func(string) []ent { return []ent{file(".wh...", "")} }},
		{name: "WhiteoutParent", wantErr: true, lower: lowerEtc,
			ents: func(string) []ent { return []ent{file("etc/.wh...", "")} }},
		{name: "WhiteoutRoot", wantErr: true, lower: lowerEtc,
			ents: func(string) []ent { return []ent{file(".wh..", "")} }},
		{name: "WhiteoutCurrentDirectory", wantErr: true, lower: lowerEtc,
			ents: func(string) []ent { return []ent{file("etc/.wh..", "")} }},
		{name: "WhiteoutSymlink",
			lower: func(t *testing.T, d, sb string) {
				writeState(t, d, "etc/passwd", "all users")
				mustSymlink(t, sb+"/etc", filepath.Join(d, "localetc"))
			},
			ents: func(string) []ent { return []ent{file(".wh.localetc", "")} },
			check: func(t *testing.T, root, _ string) {
				wantBody(t, root, "etc/passwd", "all users")
				wantAbsent(t, root, "localetc")
			}},
		{name: "WhiteoutSymlinkPath",
			lower: func(t *testing.T, d, sb string) {
				writeState(t, d, "etc/passwd", "all users")
				writeState(t, d, "etc/whitedout", "ahhhh whiteout")
				mustSymlink(t, sb+"/etc", filepath.Join(d, "localetc"))
			},
			// The whiteout lands in a directory of this layer's own, which hides the lower symlink:
			// the lower etc is not reached through it (containerd resolves it and removes the file).
			ents: func(string) []ent { return []ent{file("localetc/.wh.whitedout", "")} },
			check: func(t *testing.T, root, _ string) {
				wantBody(t, root, "etc/passwd", "all users")
				wantBody(t, root, "etc/whitedout", "ahhhh whiteout")
			}},
		{name: "WhiteoutDirectoryName",
			lower: func(t *testing.T, d, sb string) {
				writeState(t, d, "etc/passwd", "all users")
				mustSymlink(t, sb+"/etc", filepath.Join(d, "localetc"))
			},
			ents: func(string) []ent { return []ent{file(".wh.etc/somefile", "non-empty")} },
			check: func(t *testing.T, root, _ string) {
				wantBody(t, root, "etc/passwd", "all users")
				wantBody(t, root, ".wh.etc/somefile", "non-empty")
			}},
		{name: "WhiteoutDeadSymlinkParent",
			lower: func(t *testing.T, d, sb string) {
				writeState(t, d, "etc/passwd", "all users")
				mustSymlink(t, sb+"/dne", filepath.Join(d, "localetc"))
			},
			ents:  func(string) []ent { return []ent{file("localetc/.wh.etc", "")} },
			check: func(t *testing.T, root, _ string) { wantBody(t, root, "etc/passwd", "all users") }},
		{name: "WhiteoutRelativePath",
			lower: func(t *testing.T, d, sb string) {
				writeState(t, d, "etc/passwd", "all users")
				mustSymlink(t, sb+"/dne", filepath.Join(d, "localetc"))
			},
			ents:  func(string) []ent { return []ent{file("dne/../.wh.etc", "")} },
			check: func(t *testing.T, root, _ string) { wantAbsent(t, root, "etc") }},
		{name: "WhiteoutOpaque",
			lower: func(t *testing.T, d, _ string) {
				writeState(t, d, "etc/passwd", "all users")
				writeState(t, d, "etc/shadow", "root:secret")
			},
			ents: func(string) []ent { return []ent{file("etc/.wh..wh..opq", ""), file("etc/group", "all groups")} },
			check: func(t *testing.T, root, _ string) {
				wantAbsent(t, root, "etc/passwd")
				wantAbsent(t, root, "etc/shadow")
				wantBody(t, root, "etc/group", "all groups")
			}},
		{name: "WhiteoutOpaqueOutOfOrder", lower: lowerEtc,
			ents: func(string) []ent { return []ent{file("etc/group", "all groups"), file("etc/.wh..wh..opq", "")} },
			check: func(t *testing.T, root, _ string) {
				wantAbsent(t, root, "etc/passwd")
				wantBody(t, root, "etc/group", "all groups")
			}},
		{name: "SymlinkOverridePath", wantErr: true, ents: func(sb string) []ent {
			return []ent{
				dir("foo/"), dir("foo/tmp/"), file("foo/tmp/breakout", "\x00\x01\x02"),
				symlink("foo", sb),
				file("foo/tmp/breakout", "\x03\x04\x05"),
				dir("foo/"), dir("foo/tmp/"), file("foo/tmp/breakout", "\x06\x07\x08"),
			}
		}},
		{name: "HardlinkSymlinkBeforeCreateTarget", ents: func(sb string) []ent {
			return []ent{dir("etc/"), symlink("localpasswd", sb+"/etc/passwd"), hardlink("localpasswd-dup", "localpasswd"), file("/etc/passwd", "after")}
		}, check: func(t *testing.T, root, sb string) {
			// Linking a symlink links the symlink itself (linkat without AT_SYMLINK_FOLLOW).
			wantLink(t, root, "localpasswd-dup", sb+"/etc/passwd")
			wantBody(t, root, "etc/passwd", "after")
		}},
		{name: "HardlinkSymlinkRelative", ents: func(string) []ent {
			return append(etcPasswd(), symlink("passwdlink", "../../../../../etc/passwd"), hardlink("/localpasswd", "/passwdlink"))
		}, check: func(t *testing.T, root, _ string) {
			wantLink(t, root, "localpasswd", "../../../../../etc/passwd")
			sameInode(t, root, "localpasswd", "passwdlink")
		}},
		{name: "HardlinkSymlinkAbsolute", ents: func(sb string) []ent {
			return append(etcPasswd(), symlink("passwdlink", sb+"/etc/passwd"), hardlink("/localpasswd", "/passwdlink"))
		}, check: func(t *testing.T, root, sb string) {
			wantLink(t, root, "localpasswd", sb+"/etc/passwd")
			sameInode(t, root, "localpasswd", "passwdlink")
		}},
		{name: "HardlinkSymlinkChmod", ents: func(sb string) []ent {
			// The names are host paths next to a 0400 sentinel; a link that followed the symlink
			// and then applied the entry's mode would chmod the sentinel.
			p, ep := filepath.Join(sb, "perm400"), filepath.Join(sb, "also-exists-outside-root")
			return []ent{symlink(ep, p), hardlink("sketchylink", ep)}
		}, check: func(t *testing.T, root, sb string) {
			wantLink(t, root, "sketchylink", filepath.Join(sb, "perm400"))
		}},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sb := t.TempDir()
			// Eight levels below the sandbox, so relative climbs of up to eight ".." from inside
			// the layer end on a sentinel, never above the sandbox.
			deep := sb
			for i := 1; i <= 8; i++ {
				plantSentinels(t, deep)
				deep = filepath.Join(deep, "d"+string(rune('0'+i)))
			}
			if err := os.WriteFile(filepath.Join(sb, "perm400"), []byte("..."), 0o400); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(sb, "also-exists-outside-root"), []byte("..."), 0o640); err != nil {
				t.Fatal(err)
			}
			layer, lowerDir := filepath.Join(deep, "layer"), filepath.Join(deep, "lower")
			mkdirs(t, layer, lowerDir)
			if c.lower != nil {
				c.lower(t, lowerDir, sb)
			}
			before := hostState(t, sb, deep)

			err := Unpack(bytes.NewReader(makeTar(t, c.ents(sb)...)), layer)
			switch {
			case c.wantErr && err == nil:
				t.Error("hostile tar unpacked without error")
			case !c.wantErr && err != nil:
				t.Errorf("unexpected error: %v", err)
			case err != nil:
				t.Logf("refused: %v", err)
			}

			if after := hostState(t, sb, deep); !equalState(before, after) {
				for k, v := range after {
					if before[k] != v {
						t.Errorf("outside the layer %s changed:\n  was %q\n  now %q", k, before[k], v)
					}
				}
				for k := range before {
					if _, ok := after[k]; !ok {
						t.Errorf("outside the layer %s removed", k)
					}
				}
			}
			if c.check == nil || err != nil {
				return
			}
			root := layer
			if c.lower != nil {
				root = filepath.Join(deep, "merged")
				mkdirs(t, root)
				mustMount(t, []string{layer, lowerDir}, "", "", root)
			}
			c.check(t, root, sb)
		})
	}
}

// plantSentinels puts the files containerd's cases aim at into dir/etc.
func plantSentinels(t *testing.T, dir string) {
	t.Helper()
	for name, body := range map[string]string{"passwd": "host", "unbroken": "unbroken", "emptied": "notempty"} {
		writeState(t, dir, "etc/"+name, body)
	}
}

func lowerEtc(t *testing.T, d, _ string) { writeState(t, d, "etc/passwd", "all users") }

func writeState(t *testing.T, root, rel, body string) {
	t.Helper()
	p := filepath.Join(root, rel)
	mkdirs(t, filepath.Dir(p))
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// hostState is treeState of the sandbox without the layer dir, plus each path's link count: a
// hardlink made to a sentinel changes nothing else that a walk can see.
func hostState(t *testing.T, sb, deep string) map[string]string {
	t.Helper()
	skip, _ := filepath.Rel(sb, filepath.Join(deep, "layer"))
	skipMerged, _ := filepath.Rel(sb, filepath.Join(deep, "merged"))
	out := map[string]string{}
	for rel, v := range treeState(t, sb) {
		if rel == skip || strings.HasPrefix(rel, skip+"/") || rel == skipMerged || strings.HasPrefix(rel, skipMerged+"/") {
			continue
		}
		if strings.HasSuffix(rel, "/"+filepath.Base(deep)) || rel == filepath.Base(deep) {
			// deep's own mtime moves when the merged mount point is created.
			v = v[:strings.Index(v, " mtime=")]
		}
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(sb, rel), &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			v += " nlink=" + string(rune('0'+st.Nlink))
		}
		out[rel] = v
	}
	return out
}

func equalState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func sameInode(t *testing.T, root, a, b string) {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, a), &sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(root, b), &sb); err != nil {
		t.Fatal(err)
	}
	if sa.Ino != sb.Ino || sa.Dev != sb.Dev {
		t.Errorf("%s and %s are not one inode", a, b)
	}
}

func wantBody(t *testing.T, root, rel, body string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Errorf("%s: %v", rel, err)
		return
	}
	if string(b) != body {
		t.Errorf("%s = %q, want %q", rel, b, body)
	}
}

func wantAbsent(t *testing.T, root, rel string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(root, rel)); !os.IsNotExist(err) {
		t.Errorf("%s exists (%v), want it gone", rel, err)
	}
}

func wantLink(t *testing.T, root, rel, target string) {
	t.Helper()
	l, err := os.Readlink(filepath.Join(root, rel))
	if err != nil || l != target {
		t.Errorf("%s -> %q (%v), want a symlink to %q", rel, l, err, target)
	}
}
