package daemonload

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// fake is a machine with these sockets answering, these CLIs installed and these working.
func fake(env map[string]string, sockets, installed, working []string) Probe {
	in := func(l []string, s string) bool {
		for _, x := range l {
			if x == s {
				return true
			}
		}
		return false
	}
	return Probe{
		Getenv: func(k string) string { return env[k] },
		Ping: func(_ context.Context, s string) error {
			if in(sockets, s) {
				return nil
			}
			return errors.New("no daemon")
		},
		LookPath: func(c string) (string, error) {
			if in(installed, c) {
				return "/usr/bin/" + c, nil
			}
			return "", errors.New("not found")
		},
		Works: func(_ context.Context, c string) error {
			if in(working, c) {
				return nil
			}
			return errors.New("cannot connect")
		},
	}
}

func TestFind(t *testing.T) {
	for _, c := range []struct {
		name                        string
		env                         map[string]string
		sockets, installed, working []string
		want                        Target
		found                       bool
	}{
		{"nothing", nil, nil, nil, nil, Target{}, false},
		{"default socket", nil, []string{"/var/run/docker.sock"}, []string{"docker"}, []string{"docker"}, Target{Socket: "/var/run/docker.sock"}, true},
		{"DOCKER_HOST socket first", map[string]string{"DOCKER_HOST": "unix:///tmp/d.sock"}, []string{"/tmp/d.sock", "/var/run/docker.sock"}, nil, nil, Target{Socket: "/tmp/d.sock"}, true},
		{"DOCKER_HOST tcp goes through the CLI", map[string]string{"DOCKER_HOST": "tcp://10.0.0.1:2375"}, []string{"/var/run/docker.sock"}, []string{"docker"}, []string{"docker"}, Target{CLI: "docker"}, true},
		{"stale socket, CLI without daemon", nil, nil, []string{"docker"}, nil, Target{}, false},
		{"docker CLI with a context", nil, nil, []string{"docker"}, []string{"docker"}, Target{CLI: "docker"}, true},
		{"podman socket", nil, []string{"/run/podman/podman.sock"}, []string{"podman"}, []string{"podman"}, Target{Socket: "/run/podman/podman.sock"}, true},
		{"podman CLI after a broken docker", nil, nil, []string{"docker", "podman"}, []string{"podman"}, Target{CLI: "podman"}, true},
	} {
		got, found := Find(context.Background(), fake(c.env, c.sockets, c.installed, c.working))
		if got != c.want || found != c.found {
			t.Errorf("%s: %+v %t, want %+v %t", c.name, got, found, c.want, c.found)
		}
	}
}

// A socket speaking the Docker API gets the archive on POST /images/load, and an error in the
// response stream fails the load.
func TestLoadSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	fail := false
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_ping":
			w.Write([]byte("OK"))
		case "/images/load":
			got, _ = io.ReadAll(r.Body)
			if fail {
				w.Write([]byte(`{"errorDetail":{"message":"bad archive"},"error":"bad archive"}`))
				return
			}
			w.Write([]byte(`{"stream":"Loaded image: x:latest\n"}`))
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	if err := ping(context.Background(), sock); err != nil {
		t.Fatalf("ping: %v", err)
	}
	archive := filepath.Join(dir, "img.tar")
	os.WriteFile(archive, []byte("tar bytes"), 0o644)
	tgt := Target{Socket: sock}
	if err := tgt.Load(context.Background(), archive); err != nil {
		t.Fatal(err)
	}
	if string(got) != "tar bytes" {
		t.Errorf("daemon got %q", got)
	}
	fail = true
	if err := tgt.Load(context.Background(), archive); err == nil {
		t.Error("an error in the load stream was ignored")
	}
	if err := ping(context.Background(), filepath.Join(dir, "none.sock")); err == nil {
		t.Error("a missing socket answered")
	}
}
