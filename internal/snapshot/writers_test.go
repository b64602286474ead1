package snapshot

import (
	"archive/tar"
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// parallelLayer mixes the small files the writers take with every entry that must wait for them:
// the same path twice, hardlinks to files just handed out, whiteouts and directory removals over
// them, a file as a later entry's parent, opaque directories, xattrs, devices, set-gid
// directories, large files the reader writes itself, and directory headers repeated after their
// children.
func parallelLayer(t *testing.T) []ent {
	t.Helper()
	var ents []ent
	add := func(e ...ent) { ents = append(ents, e...) }
	owned := func(e ent, uid, gid int, mode int64) ent { e.uid, e.gid, e.mode = uid, gid, mode; return e }
	// Every directory has a header: a missing parent's mtime is the time of the run.
	add(ent{name: "./", typ: tar.TypeDir, mode: 0o755}, dir("usr/"), dir("usr/lib/"), dir("dev/"), dir("d/"))
	for d := range 20 {
		top := fmt.Sprintf("usr/lib/p%02d/", d)
		add(dir(top))
		for f := range 30 {
			add(file(fmt.Sprintf("%sf%02d.js", top, f), strings.Repeat(fmt.Sprint(d, f), 1+f*7)))
		}
		add(hardlink(top+"hard", top+"f03.js"), symlink(top+"sym", "f04.js"))
		add(file(top+"f05.js", "replaced by a later entry"))
		add(ent{name: top + ".wh.f06.js", typ: tar.TypeReg})
	}
	big := file("usr/lib/big.bin", strings.Repeat("x", maxJobBody+1))
	add(big, hardlink("usr/lib/big.hard", "usr/lib/big.bin"))
	add(dir("gone/"), file("gone/a", "a"), file("gone/b", "b"), ent{name: ".wh.gone", typ: tar.TypeReg})
	add(dir("dirfile/"), file("dirfile/a", "a"), file("dirfile", "now a file"))
	add(file("filedir", "a file first"), dir("filedir/"), file("filedir/a", "then a directory"))
	add(dir("opq/"), file("opq/a", "a"), ent{name: "opq/.wh..wh..opq", typ: tar.TypeReg}, file("opq/b", "b"))
	x := file("xattr", "x")
	x.xattrs = map[string]string{"user.note": "hi", "trusted.overlay.redirect": "/evil"}
	add(x, ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3})
	add(owned(dir("sgid/"), 0, 50, 0o2775), file("sgid/ours", "root:root"), owned(file("sgid/theirs", "0:50"), 0, 50, 0o644))
	add(owned(file("sgid/odd", "7:8 0640"), 7, 8, 0o640), owned(file("sgid/suid", "4755"), 0, 0, 0o4755))
	// The directory's header again, after its children, with another group and mode.
	add(owned(dir("sgid/"), 0, 60, 0o775), file("sgid/after", "written after the change"))
	add(owned(dir("usr/lib/p00/"), 3, 3, 0o700))
	return ents
}

// TestUnpackWritersMatchSerial unpacks layers with the writers and without them: the trees
// (types, modes, owners, times, contents, link targets, devices, xattrs, opaque markers and hard
// link counts) must be identical, and a hostile layer must fail the same way.
func TestUnpackWritersMatchSerial(t *testing.T) {
	needRoot(t)
	unpackWith := func(writers int, data []byte) (map[string]string, error) {
		old := unpackWriters
		unpackWriters = writers
		defer func() { unpackWriters = old }()
		d := t.TempDir()
		err := Unpack(bytes.NewReader(data), d)
		return treeStateLinks(t, d), err
	}
	layers := map[string][]ent{
		"mixed":                   parallelLayer(t),
		"file as a later parent":  {file("a", "x"), file("a/b", "y")},
		"pending file as link":    {file("f", "x"), hardlink("h", "f"), file("f", "new body")},
		"pending file whited out": {dir("d/"), file("d/f", "x"), ent{name: "d/.wh.f", typ: tar.TypeReg}, file("d/f", "again")},
	}
	for name, ents := range layers {
		t.Run(name, func(t *testing.T) {
			data := makeTar(t, ents...)
			want, werr := unpackWith(0, data)
			for range 5 {
				got, gerr := unpackWith(unpackWriters, data)
				if fmt.Sprint(gerr) != fmt.Sprint(werr) {
					t.Fatalf("serial error %v, with writers %v", werr, gerr)
				}
				if !maps.Equal(got, want) {
					for _, k := range slices.Sorted(maps.Keys(want)) {
						if got[k] != want[k] {
							t.Errorf("%s:\n writers %s\n serial  %s", k, got[k], want[k])
						}
					}
					for k := range got {
						if _, ok := want[k]; !ok {
							t.Errorf("%s only with writers: %s", k, got[k])
						}
					}
					t.FailNow()
				}
			}
		})
	}
}

// treeStateLinks is treeState plus each entry's link count and the opaque marker.
func treeStateLinks(t *testing.T, root string) map[string]string {
	t.Helper()
	st := treeState(t, root)
	for rel := range st {
		var n string
		if fi, err := lstatNlink(root + "/" + rel); err == nil {
			n = fmt.Sprint(" nlink=", fi)
		}
		if v, err := getXattr(root+"/"+rel, xattrOpaque); err == nil {
			n += " opaque=" + string(v)
		}
		st[rel] += n
	}
	return st
}

func lstatNlink(p string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return 0, err
	}
	return uint64(st.Nlink), nil
}
