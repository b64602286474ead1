package main

import (
	"fmt"
	"net"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gitRepo is a repository served by git daemon on loopback (git://127.0.0.1:PORT/repo.git).
type gitRepo struct {
	t    *testing.T
	work string // working clone the test commits in
	url  string
}

func (g *gitRepo) git(args ...string) string {
	g.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = g.work
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
		"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+g.work)
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (g *gitRepo) commit(files map[string]string, msg string) string {
	g.t.Helper()
	for p, c := range files {
		full := filepath.Join(g.work, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(c), mode); err != nil {
			g.t.Fatal(err)
		}
	}
	g.git("add", "-A")
	g.git("commit", "-q", "-m", msg)
	return g.git("rev-parse", "HEAD")
}

// serveGit makes a repository with a main branch and serves it with git daemon.
func serveGit(t *testing.T) *gitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed (hack/deps)")
	}
	base := t.TempDir()
	g := &gitRepo{t: t, work: filepath.Join(base, "work")}
	os.MkdirAll(g.work, 0o755)
	g.git("init", "-q", "-b", "main")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("git", "daemon", "--reuseaddr", "--export-all", "--base-path="+base, "--listen=127.0.0.1", fmt.Sprintf("--port=%d", port), base)
	// `git daemon` runs git-daemon as its child: kill the whole group, or the child outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.url = fmt.Sprintf("git://127.0.0.1:%d/work", port)
	return g
}

func TestAddGit(t *testing.T) {
	g := serveGit(t)
	c1 := g.commit(map[string]string{"README": "one\n", "run.sh": "#!/bin/sh\n", "sub/a.txt": "a1\n"}, "one")
	g.git("tag", "-a", "v1", "-m", "v1")
	g.git("branch", "dev")
	e := newEnv(t)

	// A tag: the whole checkout, without .git, owned by root, with git's modes.
	ctx := e.project("tag", map[string]string{"Dockerfile": "FROM {{BASE}}\nADD " + g.url + "#v1 /src\n"})
	o, _ := e.buildOCI("tag", ctx)
	l := o.lastLayer()
	for p, want := range map[string]int64{"src/README": 0o644, "src/run.sh": 0o755, "src/sub/a.txt": 0o644, "src/sub": 0o755} {
		ent, ok := l[p]
		if !ok {
			t.Fatalf("%s missing from the layer: %v", p, gitKeys(l))
		}
		if ent.hdr.Mode&0o7777 != want || ent.hdr.Uid != 0 || ent.hdr.Gid != 0 {
			t.Errorf("%s: mode %o uid %d gid %d, want %o 0 0", p, ent.hdr.Mode, ent.hdr.Uid, ent.hdr.Gid, want)
		}
	}
	if string(l["src/README"].data) != "one\n" {
		t.Errorf("README = %q", l["src/README"].data)
	}
	for p := range l {
		if strings.HasPrefix(p, "src/.git") {
			t.Errorf("%s in the layer: .git must be dropped without --keep-git-dir", p)
		}
	}

	// A branch with a subdir, --chown and --keep-git-dir.
	ctx2 := e.project("branch", map[string]string{"Dockerfile": "FROM {{BASE}}\nADD --chown=1:2 " + g.url + "#dev:sub /sub\nADD --keep-git-dir=true " + g.url + "#dev /full\n"})
	o2, r := e.buildOCI("branch", ctx2)
	sub := o2.layers[len(o2.layers)-2]
	if ent, ok := sub["sub/a.txt"]; !ok || string(ent.data) != "a1\n" || ent.hdr.Uid != 1 || ent.hdr.Gid != 2 {
		t.Errorf("sub/a.txt: %v %v", ok, gitKeys(sub))
	}
	if _, ok := sub["sub/README"]; ok {
		t.Errorf("subdir ADD copied the repository root")
	}
	full := o2.lastLayer()
	if _, ok := full["full/.git/HEAD"]; !ok {
		t.Errorf("--keep-git-dir=true: no .git/HEAD: %v", gitKeys(full))
	}
	if strings.Contains(r.out, "MISS") && !strings.Contains(r.out, "no earlier build") {
		t.Logf("first build output:\n%s", r.out)
	}

	// Unchanged refs: cached, no clone needed.
	r = e.build(ctx2)
	if m := missed(r.out); len(m) != 0 {
		t.Errorf("rebuild missed %v\n%s", m, r.out)
	}

	// Moving the branch: a miss naming the ref and both commits.
	c2 := g.commit(map[string]string{"sub/a.txt": "a2\n"}, "two")
	g.git("branch", "-f", "dev", c2)
	r = e.build(ctx2)
	reason := missReason(r.out, "#dev:sub")
	if !strings.Contains(reason, "dev") || !strings.Contains(reason, c1) || !strings.Contains(reason, c2) {
		t.Errorf("moved branch: reason %q, want the ref and %s → %s\n%s", reason, c1, c2, r.out)
	}

	// --checksum: the commit matches, or the build fails naming the line.
	ok := e.project("sum", map[string]string{"Dockerfile": "FROM {{BASE}}\nADD --checksum=" + c1 + " " + g.url + "#v1 /src\n"})
	e.build(ok)
	bad := e.project("badsum", map[string]string{"Dockerfile": "FROM {{BASE}}\nADD --checksum=" + c2 + " " + g.url + "#v1 /src\n"})
	f := e.buildFail(bad)
	if !strings.Contains(f.out, "checksum mismatch") || !strings.Contains(f.out, "Dockerfile:2") {
		t.Errorf("checksum mismatch: want an error naming Dockerfile:2\n%s", f.out)
	}
	if strings.Contains(f.out, "user:") {
		t.Errorf("credentials in output")
	}
}

func gitKeys[V any](m map[string]V) []string {
	var k []string
	for p := range m {
		k = append(k, p)
	}
	return k
}

// TestAddGitHTTP serves the repository with git http-backend (net/http/cgi) and builds an ADD of
// http://user:secret@127.0.0.1:PORT/work/.git by commit sha and by annotated tag with the tag
// object's checksum: the credentials appear neither in the output nor in a kept .git.
func TestAddGitHTTP(t *testing.T) {
	g := serveGit(t)
	c1 := g.commit(map[string]string{"README": "one\n"}, "one")
	g.git("tag", "-a", "v1", "-m", "v1")
	tagObj := g.git("rev-parse", "v1")
	c2 := g.commit(map[string]string{"README": "two\n"}, "two")
	gitBin, _ := exec.LookPath("git")
	h := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(g.work), "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://user:secret@", 1) + "/work/.git"
	e := newEnv(t)
	ctx := e.project("http", map[string]string{"Dockerfile": "FROM {{BASE}}\n" +
		"ADD " + u + "#" + c1 + " /bysha\n" +
		"ADD --checksum=" + tagObj[:12] + " --keep-git-dir=true " + u + "#v1 /tag\n" +
		"ADD " + u + " /head\n"})
	o, r := e.buildOCI("http", ctx)
	if strings.Contains(r.out, "secret") {
		t.Errorf("credentials in the build output:\n%s", r.out)
	}
	n := len(o.layers)
	if got := string(o.layers[n-3]["bysha/README"].data); got != "one\n" {
		t.Errorf("by sha: README = %q", got)
	}
	tag := o.layers[n-2]
	if got := string(tag["tag/README"].data); got != "one\n" {
		t.Errorf("by tag: README = %q", got)
	}
	if cfg, ok := tag["tag/.git/config"]; !ok || strings.Contains(string(cfg.data), "secret") {
		t.Errorf("kept .git/config missing or holds the credentials: %q", cfg.data)
	}
	if got := string(o.layers[n-1]["head/README"].data); got != "two\n" {
		t.Errorf("HEAD (%s): README = %q", c2, got)
	}
}

// TestAddGitSubmodules checks a submodule out with the repository (over git://), unless
// ?submodules=false.
func TestAddGitSubmodules(t *testing.T) {
	g := serveGit(t)
	lib := &gitRepo{t: t, work: filepath.Join(filepath.Dir(g.work), "lib"), url: strings.TrimSuffix(g.url, "/work") + "/lib"}
	os.MkdirAll(lib.work, 0o755)
	lib.git("init", "-q", "-b", "main")
	lib.commit(map[string]string{"lib.txt": "lib\n"}, "lib")
	g.commit(map[string]string{"README": "one\n"}, "one")
	g.git("-c", "protocol.allow=always", "submodule", "add", "-q", lib.url, "lib")
	g.git("commit", "-q", "-m", "submodule")
	e := newEnv(t)
	ctx := e.project("sub", map[string]string{"Dockerfile": "FROM {{BASE}}\nADD " + g.url + "#main /src\nADD " + g.url + "?ref=main&submodules=false /nosub\n"})
	o, _ := e.buildOCI("sub", ctx)
	n := len(o.layers)
	if got := string(o.layers[n-2]["src/lib/lib.txt"].data); got != "lib\n" {
		t.Errorf("submodule not checked out: %v", gitKeys(o.layers[n-2]))
	}
	if _, ok := o.layers[n-1]["nosub/lib/lib.txt"]; ok {
		t.Errorf("submodules=false checked the submodule out")
	}
	if _, ok := o.layers[n-1]["nosub/README"]; !ok {
		t.Errorf("submodules=false: no README: %v", gitKeys(o.layers[n-1]))
	}
}
