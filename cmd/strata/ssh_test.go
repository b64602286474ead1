package main

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/strata-build/strata/internal/testenv"
)

// sshKey is a throwaway key pair made by ssh-keygen.
type sshKey struct {
	path   string // private key file
	pubB64 string // base64 of the public key, as sshd's ExposeAuthInfo prints it
	secret []string
}

func newSSHKey(t *testing.T, dir, name string) sshKey {
	t.Helper()
	p := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pem := readFile(t, p)
	raw, err := ssh.ParseRawPrivateKey([]byte(pem))
	if err != nil {
		t.Fatal(err)
	}
	seed := raw.(*ed25519.PrivateKey).Seed()
	pub := strings.Fields(readFile(t, p+".pub"))
	// What must never be stored: the key file's base64 body and the raw private seed.
	lines := strings.Split(strings.TrimSpace(pem), "\n")
	return sshKey{path: p, pubB64: pub[1], secret: []string{lines[1] + lines[2], lines[2], string(seed)}}
}

// sshFixture is a real ssh-agent holding agentKey, a real sshd on loopback that accepts agentKey
// and fileKey (and tells the session which one logged in), and the static client in ctxDir.
type sshFixture struct {
	agentSock         string
	agentKey, fileKey sshKey
	sshd              *testenv.SSHD
}

func newSSHFixture(t *testing.T, ctxDir string) *sshFixture {
	t.Helper()
	if _, err := os.Stat(testenv.SSHDBinary); err != nil {
		t.Skipf("sshd not found at %s (apt-get install openssh-server; hack/deps installs it)", testenv.SSHDBinary)
	}
	testenv.RequireTools(t, "ssh-keygen", "ssh-agent", "ssh-add")
	dir := t.TempDir()
	f := &sshFixture{agentKey: newSSHKey(t, dir, "agent_key"), fileKey: newSSHKey(t, dir, "file_key")}

	// The agent lives in /dev/shm, which strata build covers with a tmpfs of its own: the socket
	// must still be reached.
	shm, err := os.MkdirTemp("/dev/shm", "ssh-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	f.agentSock = filepath.Join(shm, "agent.sock")
	agentCmd := exec.Command("ssh-agent", "-D", "-a", f.agentSock)
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentCmd.Process.Kill(); agentCmd.Wait() })
	for i := 0; ; i++ {
		if fi, err := os.Stat(f.agentSock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		if i > 200 {
			t.Fatal("ssh-agent never created its socket")
		}
		time.Sleep(25 * time.Millisecond)
	}
	add := exec.Command("ssh-add", f.agentKey.path)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+f.agentSock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}

	ak := readFile(t, f.agentKey.path+".pub") + readFile(t, f.fileKey.path+".pub")
	sshd, err := testenv.StartSSHD(dir, ak)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sshd.Close)
	f.sshd = sshd

	if err := testenv.BuildSSHClient(filepath.Join(ctxDir, "sshclient")); err != nil {
		t.Fatal(err)
	}
	return f
}

// sshCommand is the command the client runs on sshd: a greeting, then the public key that logged in.
func sshCommand(greeting string) string {
	return fmt.Sprintf(`'echo %s; cut -d" " -f3 "$SSH_USER_AUTH"'`, greeting)
}

// leftSSHDirs lists strata's ssh socket directories visible under the given roots.
func leftSSHDirs(roots ...string) []string {
	var found []string
	for _, root := range roots {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "strata-ssh-") {
				found = append(found, filepath.Join(root, e.Name()))
			}
		}
	}
	return found
}

func TestSSHForwarding(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("ssh", map[string]string{".keep": ""})
	f := newSSHFixture(t, ctx)
	addr := f.sshd.Addr()
	df := "FROM {{BASE}}\n" +
		"COPY sshclient /sshclient\n" +
		// The default id, from the agent socket, at BuildKit's default target.
		"RUN --mount=type=ssh /sshclient " + addr + " " + sshCommand("hello-from-sshd") + " > /out\n" +
		// A named id backed by a key file, at a target of its own with owner and mode.
		"RUN --mount=type=ssh,id=gh,target=/tmp/gh.sock,mode=0640,uid=1000,gid=1000 /sshclient " + addr + " " + sshCommand("hello-via-keyfile") +
		" > /out-gh && echo \"$SSH_AUTH_SOCK\" > /sock-gh && stat -c '%a %u %g' /tmp/gh.sock > /stat-gh\n" +
		// Two sockets are numbered in order; the first is SSH_AUTH_SOCK.
		"RUN --mount=type=ssh --mount=type=ssh,id=gh ls /run/buildkit > /agents && echo \"$SSH_AUTH_SOCK\" > /sock && stat -c '%a %u %g' \"$SSH_AUTH_SOCK\" > /stat\n" +
		// Not given and not required: the step runs without the socket.
		"RUN --mount=type=ssh,id=absent echo \"$SSH_AUTH_SOCK $(test -e \"$SSH_AUTH_SOCK\" && echo present || echo absent)\" > /absent\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(strings.ReplaceAll(df, "{{BASE}}", baseRef)), 0o644); err != nil {
		t.Fatal(err)
	}

	o, r := e.buildOCI("ssh", "--ssh", "default="+f.agentSock, "--ssh", "gh="+f.fileKey.path, ctx)
	rootfs := o.unpack(t)
	want := map[string]string{
		"out":     "hello-from-sshd\n" + f.agentKey.pubB64 + "\n",
		"out-gh":  "hello-via-keyfile\n" + f.fileKey.pubB64 + "\n",
		"sock-gh": "/tmp/gh.sock\n",
		"stat-gh": "640 1000 1000\n",
		"agents":  "ssh_agent.0\nssh_agent.1\n",
		"sock":    "/run/buildkit/ssh_agent.0\n",
		"stat":    "600 0 0\n",
		"absent":  "/run/buildkit/ssh_agent.0 absent\n",
	}
	for p, w := range want {
		if got := fileAt(t, rootfs, p); got != w {
			t.Errorf("/%s = %q, want %q\n%s", p, got, w, f.sshd.Log())
		}
	}
	for _, l := range o.layers {
		for name := range l {
			if strings.HasPrefix(name, "run/buildkit") || strings.HasPrefix(name, "tmp/gh.sock") {
				t.Errorf("a layer has the socket's mount point %s", name)
			}
		}
	}
	for _, k := range []sshKey{f.agentKey, f.fileKey} {
		for _, s := range k.secret {
			if hits := filesContaining(t, e.root, s); len(hits) > 0 {
				t.Errorf("private key %s in store files %v", filepath.Base(k.path), hits)
			}
			if hits := filesContaining(t, o.dir, s); len(hits) > 0 {
				t.Errorf("private key %s in exported files %v", filepath.Base(k.path), hits)
			}
			if hits := o.layersContain(s); len(hits) > 0 {
				t.Errorf("private key %s in layers %v", filepath.Base(k.path), hits)
			}
			if strings.Contains(r.out, s) {
				t.Errorf("private key %s in the progress output", filepath.Base(k.path))
			}
		}
	}
	if left := leftSSHDirs("/tmp", "/dev/shm", "/run", os.TempDir()); len(left) > 0 {
		t.Errorf("ssh socket dirs left on the host: %v", left)
	}

	// The key names each mount's id, target and options, never the agent behind it: the same ids
	// served by other sources are all hits.
	r2 := e.build("--ssh", "default="+f.fileKey.path, "--ssh", "gh="+f.agentSock, ctx)
	if m := missed(r2.out); len(m) != 0 {
		t.Errorf("other agents behind the same ids re-ran %v\n%s", m, r2.out)
	}
	// --ssh default reads $SSH_AUTH_SOCK, as buildx does; a key file in /dev/shm is read too.
	shmKey := filepath.Join(filepath.Dir(f.agentSock), "key")
	if err := os.WriteFile(shmKey, []byte(readFile(t, f.fileKey.path)), 0o600); err != nil {
		t.Fatal(err)
	}
	r3 := e.runIn("", []string{"SSH_AUTH_SOCK=" + f.agentSock}, "build", "--progress=plain", "--no-cache", "--ssh", "default", "--ssh", "gh="+shmKey, "-o", "type=local,dest="+filepath.Join(e.dir, "local"), ctx)
	if r3.err != nil {
		t.Fatalf("--ssh default with SSH_AUTH_SOCK: %v\n%s", r3.err, r3.out)
	}
	for _, p := range []string{"out", "out-gh"} {
		if got := readFile(t, filepath.Join(e.dir, "local", p)); got != want[p] {
			t.Errorf("--ssh default, gh=%s: /%s = %q, want %q", shmKey, p, got, want[p])
		}
	}
}

func TestSSHErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("sshreq", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN echo ok\nRUN --mount=type=ssh,id=deploy,required=true true\n"})
	r := e.buildFail(ctx)
	for _, w := range []string{"Dockerfile:3", `no SSH key "deploy" forwarded`, "--ssh deploy"} {
		if !r.has(w) {
			t.Errorf("missing required id: output lacks %q:\n%s", w, r.out)
		}
	}
	good := newSSHKey(t, e.dir, "good")
	r = e.buildFail("--ssh", "other="+good.path, ctx)
	if !r.has(`no SSH key "deploy" forwarded`) || !r.has("forwarded: other") {
		t.Errorf("missing required id among others: %s", r.out)
	}
	// As in BuildKit, the id is needed only to run the step: once cached, it builds without.
	e.build("--ssh", "deploy="+good.path, ctx)
	if r := e.build(ctx); len(missed(r.out)) != 0 || !strings.Contains(r.out, "CACHED") {
		t.Errorf("cached step needs its ssh id again:\n%s", r.out)
	}

	key := filepath.Join(e.dir, "k")
	os.WriteFile(key, []byte("not a key\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ssh", "deploy=" + filepath.Join(e.dir, "nosuch")}, "nosuch"},
		{[]string{"--ssh", "deploy=" + key}, "parse " + key},
		{[]string{"--ssh", "=x"}, "missing id"},
		{[]string{"--ssh", "deploy=" + good.path, "--ssh", "deploy=" + good.path}, "id given twice"},
	} {
		r := e.buildFail(append(c.args, ctx)...)
		if !r.has(c.want) || !r.has("--ssh") {
			t.Errorf("%v: output lacks %q:\n%s", c.args, c.want, r.out)
		}
		if r.has("RUN echo ok") {
			t.Errorf("%v: a bad --ssh still started the build", c.args)
		}
	}
}

// A SIGKILLed build leaves neither the socket nor anything of the key on the host: the socket
// lives in the build's private /dev/shm, which the kernel drops with its mount namespace.
func TestSSHKillLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := e.project("sshkill", map[string]string{".keep": ""})
	f := newSSHFixture(t, ctx)
	token := randomToken(t, "sshstep-")
	df := "FROM " + baseRef + "\nCOPY sshclient /sshclient\n" +
		"RUN --mount=type=ssh /sshclient " + f.sshd.Addr() + " 'echo auth-$((40+2))' && echo running-$((1+1))-" + token + " && sleep 300\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(strataBin, "--root", e.root, "build", "--progress=plain", "--ssh", "default="+f.fileKey.path, ctx)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cmd, out, "the ssh step authenticating", func() bool { return strings.Contains(out.String(), "running-2-"+token) })
	if !strings.Contains(out.String(), "auth-42") {
		t.Fatalf("the step did not log in:\n%s", out.String())
	}
	var inNS []string
	for _, c := range children(cmd.Process.Pid) {
		inNS = append(inNS, leftSSHDirs(filepath.Join("/proc", fmt.Sprint(c), "root", "dev", "shm"))...)
	}
	if len(inNS) == 0 {
		t.Errorf("no socket dir in the build's own /dev/shm while the step runs (is the check looking in the right place?)")
	}
	if left := leftSSHDirs("/tmp", "/dev/shm", "/run", os.TempDir()); len(left) > 0 {
		t.Errorf("ssh socket dirs visible on the host during the build: %v", left)
	}
	kill(t, cmd)
	if left := leftSSHDirs("/tmp", "/dev/shm", "/run", os.TempDir()); len(left) > 0 {
		t.Errorf("ssh socket dirs left on the host after the kill: %v", left)
	}
	for _, s := range f.fileKey.secret {
		if hits := filesContaining(t, e.root, s); len(hits) > 0 {
			t.Errorf("private key in store files after the kill %v", hits)
		}
	}
	// The step's processes died with the namespace.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var alive []string
		ents, _ := os.ReadDir("/proc")
		for _, ent := range ents {
			if b, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline")); strings.Contains(string(b), token) {
				alive = append(alive, ent.Name())
			}
		}
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("step processes alive after the kill: %v", alive)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
