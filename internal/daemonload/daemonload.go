// Package daemonload hands a built image, as a `docker load` archive, to a Docker or Podman
// daemon (--load). strata itself needs no daemon: when none answers, the image stays in strata's
// store only.
package daemonload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Target is the daemon an image is loaded into: over its API socket, or through its CLI.
type Target struct {
	Socket string // unix socket speaking the Docker API (Docker's, or Podman's compat socket)
	CLI    string // "docker" or "podman", when no socket answered
}

func (t Target) String() string {
	if t.Socket != "" {
		return "the daemon at " + t.Socket
	}
	return t.CLI
}

// Probe is what Find asks of the machine; tests replace it.
type Probe struct {
	Getenv   func(string) string
	Ping     func(ctx context.Context, socket string) error // the Docker API's GET /_ping
	LookPath func(string) (string, error)
	Works    func(ctx context.Context, cli string) error // `CLI info` succeeds
}

// System probes this machine.
func System() Probe {
	return Probe{Getenv: os.Getenv, Ping: ping, LookPath: exec.LookPath, Works: cliWorks}
}

// Find picks where --load sends the image, in the order docker's own client would reach a
// daemon: $DOCKER_HOST when it is a unix socket, Docker's default socket, the docker CLI (which
// knows contexts and remote hosts), then Podman's rootful socket and CLI. A socket or CLI counts
// only if the daemon behind it answers, so a stale socket file or a CLI without a daemon is
// skipped.
func Find(ctx context.Context, p Probe) (Target, bool) {
	var sockets []string
	host := p.Getenv("DOCKER_HOST")
	if s, ok := strings.CutPrefix(host, "unix://"); ok {
		sockets = append(sockets, s)
	}
	if host == "" {
		sockets = append(sockets, "/var/run/docker.sock")
	}
	for _, s := range sockets {
		if p.Ping(ctx, s) == nil {
			return Target{Socket: s}, true
		}
	}
	if _, err := p.LookPath("docker"); err == nil && p.Works(ctx, "docker") == nil {
		return Target{CLI: "docker"}, true
	}
	if host == "" {
		if p.Ping(ctx, "/run/podman/podman.sock") == nil {
			return Target{Socket: "/run/podman/podman.sock"}, true
		}
	}
	if _, err := p.LookPath("podman"); err == nil && p.Works(ctx, "podman") == nil {
		return Target{CLI: "podman"}, true
	}
	return Target{}, false
}

// Load sends the archive at path to the target.
func (t Target) Load(ctx context.Context, path string) error {
	if t.Socket == "" {
		out, err := exec.CommandContext(ctx, t.CLI, "load", "-i", path).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s load: %w: %s", t.CLI, err, bytes.TrimSpace(out))
		}
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker/images/load?quiet=1", f)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := client(t.Socket, 0).Do(req)
	if err != nil {
		return fmt.Errorf("load into %s: %w", t, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("load into %s: %s: %s", t, resp.Status, bytes.TrimSpace(body))
	}
	// Errors after the headers come as JSON messages in the stream.
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err != nil {
			break
		}
		if m.Error != "" {
			return fmt.Errorf("load into %s: %s", t, m.Error)
		}
	}
	return nil
}

func client(socket string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

func ping(ctx context.Context, socket string) error {
	if _, err := os.Stat(socket); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := client(socket, 3*time.Second).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping %s: %s", socket, resp.Status)
	}
	return nil
}

func cliWorks(ctx context.Context, cli string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, cli, "info", "--format", "{{.ID}}").Run()
}
