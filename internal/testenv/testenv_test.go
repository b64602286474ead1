package testenv

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestBusyboxRootfs(t *testing.T) {
	RequireTools(t, HostBusybox)
	dir := t.TempDir()
	if err := BusyboxRootfs(dir); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin", "sh")); err != nil || target != "/bin/busybox" {
		t.Fatalf("bin/sh -> %q, %v; want /bin/busybox", target, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Fatalf("tmp mode %v, want 1777", fi.Mode())
	}
	passwd, err := os.ReadFile(filepath.Join(dir, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "app:x:1000:1000:"; !strings.Contains(string(passwd), want) {
		t.Fatalf("passwd lacks %q:\n%s", want, passwd)
	}
}

func TestBuildBusyboxImage(t *testing.T) {
	RequireTools(t, HostBusybox, "skopeo")
	dir := t.TempDir()
	img, err := BuildBusyboxImage(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := BuildBusyboxImage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if again.Manifest.Digest != img.Manifest.Digest {
		t.Fatalf("not reproducible: %s then %s", img.Manifest.Digest, again.Manifest.Digest)
	}
	out, err := SkopeoOutput("inspect", "oci:"+dir+":latest")
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Digest       string
		Architecture string
		Os           string
		Layers       []string
		Env          []string
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Digest != img.Manifest.Digest.String() || info.Architecture != "amd64" || info.Os != "linux" ||
		len(info.Layers) != 1 || len(info.Env) != 1 || info.Env[0] != BusyboxPath {
		t.Fatalf("skopeo inspect disagrees with %s: %s", img.Manifest.Digest, out)
	}
}

func TestStartRegistry(t *testing.T) {
	r := RequireRegistry(t)
	resp, err := http.Get("http://" + r.Addr() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}
	RequireTools(t, "skopeo")
	ref, err := PushBusybox(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := Skopeo("inspect", "--tls-verify=false", "docker://"+ref); err != nil {
		t.Fatal(err)
	}
	dir := r.dir
	r.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("registry dir %s left behind: %v", dir, err)
	}
}

func TestDirStoreRejectsWrongContent(t *testing.T) {
	s, err := NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := digest.Digest("sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae") // "foo"
	if err := s.Ingest(d, strings.NewReader("bar")); err == nil {
		t.Fatal("ingest of mismatching content succeeded")
	}
	if s.Has(d) {
		t.Fatal("mismatching content became visible")
	}
	if err := s.Ingest(d, strings.NewReader("foo")); err != nil || !s.Has(d) {
		t.Fatalf("ingest foo: %v", err)
	}
}
