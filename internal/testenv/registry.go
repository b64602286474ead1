package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryBinary is Debian's build of the CNCF distribution registry.
const RegistryBinary = "/usr/bin/docker-registry"

// Registry is a docker-registry process serving plain HTTP on a loopback port, storing into a temp dir.
type Registry struct {
	addr string
	dir  string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	once sync.Once

	user, password string // set for StartAuthRegistry
}

// registryConfig is written from scratch because Debian's /etc/docker/registry/config.yml turns on
// htpasswd auth, which makes every request 401. The blob descriptor cache is left off so a deleted
// blob cannot be served from memory.
const registryConfig = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`

// authConfig is appended to registryConfig by StartAuthRegistry: distribution's htpasswd auth,
// which answers every request without valid basic credentials with a 401 challenge.
const authConfig = `auth:
  htpasswd:
    realm: strata-test
    path: %s
`

// StartRegistry starts a registry on a free 127.0.0.1 port and waits until GET /v2/ answers 200.
func StartRegistry() (*Registry, error) {
	return startWithRetries("", "")
}

// StartAuthRegistry starts a registry that requires user and password (htpasswd, bcrypt) and
// waits until GET /v2/ answers 401 without credentials and 200 with them.
func StartAuthRegistry(user, password string) (*Registry, error) {
	return startWithRetries(user, password)
}

func startWithRetries(user, password string) (*Registry, error) {
	if _, err := os.Stat(RegistryBinary); err != nil {
		return nil, fmt.Errorf("start registry: %w (install the docker-registry package)", err)
	}
	// A port picked by the kernel can be taken between Close and the registry's bind; retrying a
	// few times beats holding the socket and passing it down.
	var lastErr error
	for range 3 {
		r, err := startRegistry(user, password)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startRegistry(user, password string) (*Registry, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}
	dir, err := os.MkdirTemp("", "strata-registry-")
	if err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}
	cfg := filepath.Join(dir, "config.yml")
	config := fmt.Appendf(nil, registryConfig, filepath.Join(dir, "data"), addr)
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start registry: %w", err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, fmt.Appendf(nil, "%s:%s\n", user, hash), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start registry: %w", err)
		}
		config = fmt.Appendf(config, authConfig, htpasswd)
	}
	if err := os.WriteFile(cfg, config, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start registry: %w", err)
	}
	r := &Registry{addr: addr, dir: dir, log: &syncBuffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(RegistryBinary, "serve", cfg)
	r.cmd.Stdout = r.log
	r.cmd.Stderr = r.log
	if err := r.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start registry: %w", err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				r.user, r.password = user, password
				return r, nil
			}
			r.Close()
			return nil, fmt.Errorf("start registry: GET /v2/ returned %s; log:\n%s", resp.Status, r.log)
		}
		select {
		case <-r.done:
			r.Close()
			return nil, fmt.Errorf("start registry: exited early: %v; log:\n%s", r.cmd.ProcessState, r.log)
		case <-ctx.Done():
			r.Close()
			return nil, fmt.Errorf("start registry: not ready after 15s: %w; log:\n%s", err, r.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Addr is host:port, usable as the registry part of a reference.
func (r *Registry) Addr() string { return r.addr }

// Credentials returns the user and password an auth registry requires ("", "" for none).
func (r *Registry) Credentials() (user, password string) { return r.user, r.password }

// Log returns what the registry has printed so far, for failure messages.
func (r *Registry) Log() string { return r.log.String() }

// Close kills the registry and deletes its storage.
func (r *Registry) Close() error {
	r.once.Do(func() {
		if r.cmd.Process != nil {
			r.cmd.Process.Kill()
			<-r.done
		}
		os.RemoveAll(r.dir)
	})
	return nil
}

// PushBusybox builds the busybox fixture and copies it to ADDR/busybox:latest with skopeo, so tests of
// strata's own registry client start from an image strata did not upload. It returns the reference.
func PushBusybox(reg *Registry) (string, error) {
	return PushBusyboxAs(reg, "busybox:latest")
}

// PushBusyboxAs is PushBusybox under another repository:tag (e.g. "library/busybox:latest" for a
// docker.io mirror).
func PushBusyboxAs(reg *Registry, repoTag string) (string, error) {
	dir, err := os.MkdirTemp("", "strata-busybox-layout-")
	if err != nil {
		return "", fmt.Errorf("push busybox: %w", err)
	}
	defer os.RemoveAll(dir)
	if _, err := BuildBusyboxImage(dir); err != nil {
		return "", err
	}
	ref := reg.Addr() + "/" + repoTag
	args := []string{"copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"}
	if reg.user != "" {
		args = append(args, "--dest-creds", reg.user+":"+reg.password)
	}
	if err := Skopeo(append(args, "oci:"+dir+":latest", "docker://"+ref)...); err != nil {
		return "", fmt.Errorf("push busybox: %w", err)
	}
	return ref, nil
}

// Skopeo runs skopeo with args, returning its output in the error when it fails.
func Skopeo(args ...string) error {
	_, err := SkopeoOutput(args...)
	return err
}

// SkopeoOutput runs skopeo with args and returns its stdout.
func SkopeoOutput(args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("skopeo", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("skopeo %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// RequireTools skips t unless every tool is on PATH (or is an existing absolute path).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not available: %v", tool, err)
		}
	}
}

// RequireRegistry starts a registry for t alone, skipping when docker-registry is not installed.
func RequireRegistry(t testing.TB) *Registry {
	t.Helper()
	RequireTools(t, RegistryBinary)
	r, err := StartRegistry()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
