package sshagent

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func TestParseSpec(t *testing.T) {
	for in, want := range map[string]Spec{
		"default":           {ID: "default"},
		"gh":                {ID: "gh"},
		"gh=/a/sock":        {ID: "gh", Paths: []string{"/a/sock"}},
		"default=/k1,/k2":   {ID: "default", Paths: []string{"/k1", "/k2"}},
		"x=/path/with=sign": {ID: "x", Paths: []string{"/path/with=sign"}},
	} {
		got, err := ParseSpec(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if _, err := ParseSpec("=/k"); err == nil {
		t.Error("ParseSpec(=/k) accepted an empty id")
	}
}

// writeKey writes a fresh ed25519 key in OpenSSH format, optionally passphrase-protected.
func writeKey(t *testing.T, dir, name string, passphrase string) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var blk *pem.Block
	if passphrase == "" {
		blk, err = ssh.MarshalPrivateKey(priv, name)
	} else {
		blk, err = ssh.MarshalPrivateKeyWithPassphrase(priv, name, []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return p, sp
}

// upstream serves a keyring holding one key on a unix socket, standing in for the user's agent.
func upstream(t *testing.T, dir string) (string, agent.Agent) {
	t.Helper()
	kr := agent.NewKeyring()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := kr.Add(agent.AddedKey{PrivateKey: priv, Comment: "upstream"}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "up.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { agent.ServeAgent(kr, c); c.Close() }()
		}
	}()
	return sock, kr
}

func dial(t *testing.T, sock string) (agent.ExtendedAgent, net.Conn) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return agent.NewClient(c), c
}

func TestServeKeysAndSocket(t *testing.T) {
	dir := t.TempDir()
	k1, pub1 := writeKey(t, dir, "k1", "")
	k2, pub2 := writeKey(t, dir, "k2", "")
	upSock, upKeys := upstream(t, dir)
	t.Setenv("SSH_AUTH_SOCK", upSock)
	a, err := Load([]Spec{{ID: "keys", Paths: []string{k1, k2}}, {ID: "default"}})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Has("keys") || !a.Has("default") || a.Has("other") || !reflect.DeepEqual(a.IDs(), []string{"default", "keys"}) {
		t.Fatalf("ids %v", a.IDs())
	}
	var nilAgents *Agents
	if nilAgents.Has("default") {
		t.Fatal("a nil *Agents forwards an id")
	}

	mem := t.TempDir()
	sock, stop, err := a.Serve("keys", mem, SocketOpts{UID: 123, GID: 456, Mode: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o640 {
		t.Fatalf("socket %v %v", fi, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 123 || st.Gid != 456 {
		t.Fatalf("socket owner %d:%d", st.Uid, st.Gid)
	}
	ag, conn := dial(t, sock)
	keys, err := ag.List()
	if err != nil || len(keys) != 2 {
		t.Fatalf("List = %v, %v", keys, err)
	}
	got := map[string]bool{string(keys[0].Marshal()): true, string(keys[1].Marshal()): true}
	if !got[string(pub1.Marshal())] || !got[string(pub2.Marshal())] {
		t.Fatal("the served keys are not the files' keys")
	}
	sig, err := ag.Sign(pub1, []byte("data"))
	if err != nil || pub1.Verify([]byte("data"), sig) != nil {
		t.Fatalf("Sign: %v", err)
	}

	// stop closes open connections too and removes the directory.
	stop()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ag.List(); err == nil {
		t.Error("a connection survived stop")
	}
	if ents, _ := os.ReadDir(mem); len(ents) != 0 {
		t.Errorf("stop left %v", ents)
	}

	// The user's own agent is served read-only.
	sock, stop, err = a.Serve("default", mem, SocketOpts{Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ag, _ = dial(t, sock)
	keys, err = ag.List()
	if err != nil || len(keys) != 1 || keys[0].Comment != "upstream" {
		t.Fatalf("List through the socket = %v, %v", keys, err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := ag.Add(agent.AddedKey{PrivateKey: priv}); err == nil {
		t.Error("a step added a key to the user's agent")
	}
	if err := ag.RemoveAll(); err == nil {
		t.Error("a step removed the user's keys")
	}
	if err := ag.Lock([]byte("x")); err == nil {
		t.Error("a step locked the user's agent")
	}
	if up, _ := upKeys.List(); len(up) != 1 {
		t.Errorf("the user's agent has %d keys", len(up))
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	key, _ := writeKey(t, dir, "k", "")
	locked, _ := writeKey(t, dir, "locked", "pw")
	sock, _ := upstream(t, dir)
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("junk"), 0o600)
	for _, c := range []struct {
		name  string
		specs []Spec
		env   string
		want  string
	}{
		{"no agent", []Spec{{ID: "default"}}, "", "SSH_AUTH_SOCK is not set"},
		{"missing file", []Spec{{ID: "a", Paths: []string{filepath.Join(dir, "nosuch")}}}, sock, "--ssh a: stat"},
		{"not a key", []Spec{{ID: "a", Paths: []string{junk}}}, sock, "parse " + junk},
		{"passphrase", []Spec{{ID: "a", Paths: []string{locked}}}, sock, "protected by a passphrase"},
		{"key and socket", []Spec{{ID: "a", Paths: []string{key, sock}}}, sock, "not both"},
		{"two sockets", []Spec{{ID: "a", Paths: []string{sock, sock}}}, sock, "only one agent socket"},
		{"duplicate", []Spec{{ID: "default"}, {ID: "", Paths: []string{key}}}, sock, "--ssh default: id given twice"},
	} {
		t.Setenv("SSH_AUTH_SOCK", c.env)
		_, err := Load(c.specs)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

// Serving writes nothing but the socket, in a directory of its own (the key stays in memory).
func TestServeWritesOnlyTheSocket(t *testing.T) {
	dir := t.TempDir()
	key, _ := writeKey(t, dir, "k", "")
	a, err := Load([]Spec{{ID: "default", Paths: []string{key}}})
	if err != nil {
		t.Fatal(err)
	}
	mem := t.TempDir()
	sock, stop, err := a.Serve("default", mem, SocketOpts{Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if ents, _ := os.ReadDir(mem); len(ents) != 1 {
		t.Fatalf("%s holds %v", mem, ents)
	}
	ents, _ := os.ReadDir(filepath.Dir(sock))
	if len(ents) != 1 || ents[0].Type()&os.ModeSocket == 0 {
		t.Fatalf("socket dir holds %v", ents)
	}
}
