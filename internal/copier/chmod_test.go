package copier

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The expectations are setmode(3)'s with a zero umask, which is what BuildKit applies
// (fsutil copy with dchapes-mode's ParseWithUmask(s, 0)); BuildKit's testChmodNonOctal checks the
// first group against busybox chmod.
func TestChmodSymbolic(t *testing.T) {
	dir := fs.ModeDir
	cases := []struct {
		from fs.FileMode
		mode string
		want fs.FileMode
	}{
		// testChmodNonOctal's cases: a 0666 file and a 0124 directory.
		{0o666, "go-w", 0o644},
		{0o666, "u=rw,g=r,o=r", 0o644},
		{0o666, "a+X", 0o666},
		{dir | 0o124, "go-w", dir | 0o104},
		{dir | 0o124, "u+rw,g+r,o-x,o+w", dir | 0o766},
		{dir | 0o124, "a+X", dir | 0o135},

		{0o777, "=", 0},
		{0o421, "+", 0o421},
		{0o421, "-", 0o421},
		{0o421, "+t", fs.ModeSticky | 0o421},
		{fs.ModeSticky | 0o421, "-t", 0o421},
		{0, "u+X", 0},
		{0o001, "u+X", 0o101},
		{dir, "u+X", dir | 0o100},
		{0, "u+s", fs.ModeSetuid},
		{0, "g+s", fs.ModeSetgid},
		{0, "o+s", 0},
		{0o100, "o+X", 0o101},
		{0, "+s", fs.ModeSetuid | fs.ModeSetgid},
		{0o010, "+X", 0o111},
		{0o777, "-X", 0o666},
		{fs.ModeSetuid | fs.ModeSetgid | 0o777, "-s", 0o777},
		{fs.ModeSetuid | 0o777, "u-s", 0o777},
		{0o777, "u=rw", 0o677},
		{0o777, "u=", 0o077},
		{0o777, "=rw", 0o666},
		{0o042, "u=g", 0o442},
		{0o722, "u=g-w", 0o022},
		{0o772, "u=g-w", 0o572},
		{0o021, "u+go", 0o321},
		{0o777, "a=r,ug=rw,u+x", 0o764},
		{0, "o+r,g+w,a+t,g-s,u+og", fs.ModeSticky | 0o624},
		{fs.ModeSetgid | 0o100, "o+r,g+w,a+t,g-s,u+og", fs.ModeSticky | 0o724},
		{0, "u=rwx,go=u-w", 0o755},
		{0o370, "go=u-w", 0o311},
		{0o444, "u=rwX,go=rX", 0o644},
		{dir | 0o442, "u=rwX,go=rX", dir | 0o755},
		{0o641, "u=rwX,go=rX", 0o755},
		{0o777, "go-X", 0o766},
		{0o424, "=X", 0},
		{0o421, "=rX", 0o555},
		// "=" without a class leaves the sticky bit alone; "u=" clears setuid.
		{fs.ModeSticky | fs.ModeSetuid | 0o600, "u=rw,g=r,o=r", fs.ModeSticky | 0o644},
	}
	for _, c := range cases {
		m, err := ParseChmod(c.mode)
		if err != nil {
			t.Errorf("ParseChmod(%q): %v", c.mode, err)
			continue
		}
		if got := m.Apply(c.from); got != c.want {
			t.Errorf("%q on %v: %v, want %v", c.mode, c.from, got, c.want)
		}
	}
}

func TestChmodParse(t *testing.T) {
	for _, s := range []string{"0", "755", "0644", "07777", "4755"} {
		m, err := ParseChmod(s)
		if err != nil || !m.IsOctal() {
			t.Errorf("ParseChmod(%q) = %v, %v; want octal", s, m, err)
		}
	}
	if m, _ := ParseChmod("4750"); m.Apply(dirMode(0o777)) != fs.ModeDir|fs.ModeSetuid|0o750 {
		t.Errorf("4750 on a directory: %v", m.Apply(dirMode(0o777)))
	}
	octal := []string{"64a", "8", "010000", "0x1ff", "9u+x"}
	for _, s := range octal {
		_, err := ParseChmod(s)
		if err == nil || !strings.Contains(err.Error(), "it should be octal string and between 0 and 07777") {
			t.Errorf("ParseChmod(%q) = %v, want BuildKit's octal error", s, err)
		}
	}
	bad := []string{"", "u", "a+x,", "u+x,,g+w", "z+x", "+q", "u+x g+w", "-1"}
	for _, s := range bad {
		if _, err := ParseChmod(s); err == nil {
			t.Errorf("ParseChmod(%q) accepted", s)
		}
	}
}

func dirMode(m fs.FileMode) fs.FileMode { return fs.ModeDir | m }

// busybox chmod is what BuildKit's own test compares with; this checks a sample of modes against
// the host's chmod(1). GNU chmod judges "X" on the mode as edited so far where setmode(3), and so
// BuildKit, judges it on the original mode ("a-x,u+X", "=r,+X" differ), so such modes are left out.
func TestChmodMatchesChmodCommand(t *testing.T) {
	if _, err := exec.LookPath("chmod"); err != nil {
		t.Skip("no chmod(1)")
	}
	modes := []string{"go-w", "u=rw,g=r,o=r", "a+X", "u+rw,g+r,o-x,o+w", "a=rX", "u+x,g=u", "o=g-w", "ug+s", "u=rwX,go=rX", "a+X,go-w"}
	starts := []fs.FileMode{0o644, 0o755, 0o600, 0o124, 0o751}
	dir := t.TempDir()
	for _, mode := range modes {
		m, err := ParseChmod(mode)
		if err != nil {
			t.Fatal(err)
		}
		for _, isDir := range []bool{false, true} {
			for _, st := range starts {
				p := filepath.Join(dir, "x")
				os.RemoveAll(p)
				from := st
				if isDir {
					if err := os.Mkdir(p, 0o700); err != nil {
						t.Fatal(err)
					}
					from |= fs.ModeDir
				} else if err := os.WriteFile(p, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, st); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command("sh", "-c", "umask 0 && chmod "+mode+" "+p).CombinedOutput(); err != nil {
					t.Fatalf("chmod %s: %v %s", mode, err, out)
				}
				fi, err := os.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := m.Apply(from), fi.Mode(); got != want {
					t.Errorf("%q on %v: %v, chmod(1) gives %v", mode, from, got, want)
				}
			}
		}
	}
}

// An octal --chmod also gives its permission bits to the directories the copy creates (the
// parents and a directory source's destination), as BuildKit's fsutil MkdirAll does; a symbolic
// one leaves them 0755 (conformance cases copy-chmod-dir, copy-chmod-chown).
func TestChmodCreatedDirs(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree(t, src, ctx)
	octal, err := ParseChmod("2750")
	if err != nil {
		t.Fatal(err)
	}
	symbolic, err := ParseChmod("u+x")
	if err != nil {
		t.Fatal(err)
	}
	mustCopy(t, src, []string{"app"}, dst, "/o/sub/", Options{FromContext: true, Chmod: octal})
	mustCopy(t, src, []string{"a.txt"}, dst, "/s/t/", Options{FromContext: true, Chmod: symbolic})
	for p, want := range map[string]fs.FileMode{"o": 0o750, "o/sub": 0o750, "s": 0o755, "s/t": 0o755} {
		fi, err := os.Lstat(filepath.Join(dst, p))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (fs.ModePerm | fs.ModeSetgid); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
}
