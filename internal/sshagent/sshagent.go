// Package sshagent forwards SSH agents into RUN steps as `docker buildx build --ssh` does: each
// id is either an agent socket on the host or private key files loaded into an in-process agent,
// and a step reaches it through a socket of its own that lives only while the step runs. Keys
// stay in this process's memory; nothing is written but the listening socket.
package sshagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/sys/unix"
)

// DefaultID is the id of `--ssh default` and of a RUN --mount=type=ssh without id=.
const DefaultID = "default"

// Spec is one --ssh flag: ID[=PATH[,PATH…]]. No paths means $SSH_AUTH_SOCK.
type Spec struct {
	ID    string
	Paths []string
}

// ParseSpec reads a --ssh value the way buildx does: "default", "ID" or "ID=PATH[,PATH…]".
func ParseSpec(s string) (Spec, error) {
	id, paths, hasPaths := strings.Cut(s, "=")
	if id == "" {
		return Spec{}, fmt.Errorf("--ssh %q: missing id (use default, ID or ID=SOCKET|KEY[,KEY…])", s)
	}
	sp := Spec{ID: id}
	if hasPaths {
		sp.Paths = strings.Split(paths, ",")
	}
	return sp, nil
}

// Agents are the ids a build forwards. A nil *Agents forwards none.
type Agents struct {
	byID map[string]*source
}

// source is one id: an upstream agent socket, or a keyring holding the loaded keys.
type source struct {
	socket  string
	keyring agent.Agent
}

// Load checks every spec now, as buildx does when it starts the session: a missing socket, an
// unreadable or passphrase-protected key, or an id given twice fails the build before it starts.
func Load(specs []Spec) (*Agents, error) {
	a := &Agents{byID: map[string]*source{}}
	for _, sp := range specs {
		id := sp.ID
		if id == "" {
			id = DefaultID
		}
		if _, dup := a.byID[id]; dup {
			return nil, fmt.Errorf("--ssh %s: id given twice", id)
		}
		src, err := load(sp.Paths)
		if err != nil {
			return nil, fmt.Errorf("--ssh %s: %w", id, err)
		}
		a.byID[id] = src
	}
	return a, nil
}

func load(paths []string) (*source, error) {
	if len(paths) == 0 || len(paths) == 1 && paths[0] == "" {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			return nil, errors.New("no path given and SSH_AUTH_SOCK is not set: start an ssh-agent or pass ID=KEYFILE")
		}
		paths = []string{sock}
	}
	var socket string
	keyring := agent.NewKeyring()
	keys := 0
	for _, p := range paths {
		if socket != "" {
			return nil, errors.New("only one agent socket may be given")
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&os.ModeSocket != 0 {
			if socket, err = pinSocket(p); err != nil {
				return nil, err
			}
			continue
		}
		// BuildKit reads at most 100 KiB of a key file.
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(f, 100*1024))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		k, err := ssh.ParseRawPrivateKey(data)
		if err != nil {
			var pm *ssh.PassphraseMissingError
			if errors.As(err, &pm) {
				return nil, fmt.Errorf("%s is protected by a passphrase: add it to an ssh-agent and pass the agent's socket", p)
			}
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		if err := keyring.Add(agent.AddedKey{PrivateKey: k}); err != nil {
			return nil, fmt.Errorf("add %s to the agent: %w", p, err)
		}
		keys++
	}
	if socket != "" {
		if keys > 0 {
			return nil, errors.New("give either an agent socket or key files, not both")
		}
		return &source{socket: socket}, nil
	}
	return &source{keyring: keyring}, nil
}

// pinSocket returns a path that reaches the socket at p through an open handle on its directory,
// so it still connects after strata build mounts its private tmpfs over /dev/shm (where agents
// and keys are sometimes kept to stay off disk) and however long p is. The handle lives as long
// as the process: a build forwards a few ids at most.
func pinSocket(p string) (string, error) {
	fd, err := unix.Open(filepath.Dir(p), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", filepath.Dir(p), err)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(p)), nil
}

// Has reports whether id is forwarded.
func (a *Agents) Has(id string) bool {
	if a == nil {
		return false
	}
	_, ok := a.byID[id]
	return ok
}

// IDs lists the forwarded ids, sorted (for error messages).
func (a *Agents) IDs() []string {
	if a == nil {
		return nil
	}
	ids := make([]string, 0, len(a.byID))
	for id := range a.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// SocketOpts are the owner and permission bits of a step's socket (RUN --mount uid, gid, mode).
type SocketOpts struct {
	UID, GID int
	Mode     os.FileMode
}

// Serve listens for id's agent on a new socket in a fresh directory under dir and returns the
// socket's path and a stop function, which closes every connection and removes the directory.
// dir should be memory-backed and private to the build (the socket is then gone even if the
// build is killed). Each connection gets its own connection to an upstream socket, wrapped so
// the step cannot add, remove or lock keys there, as BuildKit does; keys loaded from files are
// served from the keyring as they are in BuildKit.
func (a *Agents) Serve(id, dir string, o SocketOpts) (string, func(), error) {
	src := a.byID[id]
	if src == nil {
		return "", nil, fmt.Errorf("ssh agent %q is not forwarded", id)
	}
	d, err := os.MkdirTemp(dir, "strata-ssh-")
	if err != nil {
		return "", nil, fmt.Errorf("ssh %s: %w", id, err)
	}
	// 0711: the step's user reaches the socket by path without listing the directory.
	if err := os.Chmod(d, 0o711); err != nil {
		os.RemoveAll(d)
		return "", nil, fmt.Errorf("ssh %s: %w", id, err)
	}
	sock := filepath.Join(d, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(d)
		return "", nil, fmt.Errorf("ssh %s: %w", id, err)
	}
	if err := os.Chown(sock, o.UID, o.GID); err != nil {
		l.Close()
		os.RemoveAll(d)
		return "", nil, fmt.Errorf("ssh %s: %w", id, err)
	}
	if err := os.Chmod(sock, o.Mode&0o777); err != nil {
		l.Close()
		os.RemoveAll(d)
		return "", nil, fmt.Errorf("ssh %s: %w", id, err)
	}
	srv := &server{src: src, l: l, conns: map[net.Conn]struct{}{}}
	srv.wg.Add(1)
	go srv.accept()
	return sock, func() {
		srv.stop()
		os.RemoveAll(d)
	}, nil
}

// server serves one step's socket.
type server struct {
	src   *source
	l     net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

func (s *server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serve(c)
		}()
	}
}

func (s *server) serve(c net.Conn) {
	defer c.Close()
	if s.src.keyring != nil {
		agent.ServeAgent(s.src.keyring, c)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	up, err := (&net.Dialer{}).DialContext(ctx, "unix", s.src.socket)
	cancel()
	if err != nil {
		return // the client sees its connection closed, as with BuildKit's per-connection errors
	}
	if !s.track(up) {
		up.Close()
		return
	}
	defer s.untrack(up)
	defer up.Close()
	agent.ServeAgent(readOnly{agent.NewClient(up)}, c)
}

// track registers a connection for stop to close; false once stopped.
func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// stop closes the listener and every open connection, so a process the step left behind holds
// nothing, and waits for the serving goroutines.
func (s *server) stop() {
	s.mu.Lock()
	s.done = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.l.Close()
	s.wg.Wait()
}

// readOnly keeps a step from changing the user's own agent.
type readOnly struct {
	agent.ExtendedAgent
}

var errReadOnly = errors.New("not allowed through a forwarded agent")

func (readOnly) Add(agent.AddedKey) error                 { return errReadOnly }
func (readOnly) Remove(ssh.PublicKey) error               { return errReadOnly }
func (readOnly) RemoveAll() error                         { return errReadOnly }
func (readOnly) Lock([]byte) error                        { return errReadOnly }
func (readOnly) Extension(string, []byte) ([]byte, error) { return nil, errReadOnly }
