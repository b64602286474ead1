package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// SSHDBinary is OpenSSH's server (Debian's openssh-server).
const SSHDBinary = "/usr/sbin/sshd"

// SSHD is an sshd on a loopback port with a config of its own: one host key, root logs in with
// the keys of one authorized_keys file and nothing else (no passwords, no PAM).
type SSHD struct {
	addr string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	once sync.Once
}

// StartSSHD starts sshd on a free 127.0.0.1 port, with its host key, config and pid file in dir,
// accepting the public keys in authorizedKeys (authorized_keys lines).
func StartSSHD(dir, authorizedKeys string) (*SSHD, error) {
	if _, err := os.Stat(SSHDBinary); err != nil {
		return nil, fmt.Errorf("start sshd: %w (install the openssh-server package)", err)
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("start sshd: host key: %v: %s", err, out)
	}
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(ak, []byte(authorizedKeys), 0o600); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	// sshd refuses to start without its privilege separation directory, which the package's
	// service unit normally creates.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	var lastErr error
	for range 3 {
		s, err := startSSHD(dir, hostKey, ak)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startSSHD(dir, hostKey, authorizedKeys string) (*SSHD, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	// StrictModes is off because the files live under /tmp, which is world-writable.
	cfg := strings.Join([]string{
		"ListenAddress " + addr,
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + authorizedKeys,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		// The session learns which key logged in ($SSH_USER_AUTH), so tests can tell agents apart.
		"ExposeAuthInfo yes",
		"LogLevel ERROR",
		"",
	}, "\n")
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	s := &SSHD{addr: addr, log: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(SSHDBinary, "-D", "-e", "-f", cfgPath)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("start sshd: exited early: %v; log:\n%s", s.cmd.ProcessState, s.log)
		case <-ctx.Done():
			s.Close()
			return nil, fmt.Errorf("start sshd: not listening after 15s: %w; log:\n%s", err, s.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addr is 127.0.0.1:PORT.
func (s *SSHD) Addr() string { return s.addr }

// Log returns what sshd has printed so far, for failure messages.
func (s *SSHD) Log() string { return s.log.String() }

// Close stops sshd.
func (s *SSHD) Close() {
	s.once.Do(func() {
		s.cmd.Process.Kill()
		<-s.done
	})
}

// BuildSSHClient builds the sshclient command statically (it runs in busybox images) to dest.
func BuildSSHClient(dest string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", dest, "github.com/strata-build/strata/internal/testenv/sshclient")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build sshclient: %v: %s", err, out)
	}
	return nil
}
