package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-build/strata/internal/testenv"
)

// The auth tests run strata against Debian's docker-registry with htpasswd auth (every request
// without valid basic credentials gets a 401 challenge), through the fault-injecting proxy so the
// requests can be counted. Credentials come only from $DOCKER_CONFIG/config.json, as from
// `docker login`.

const authUser, authPassword = "strata", "s3cret-pa55"

// authRegistry starts an htpasswd registry holding busybox:latest and a proxy in front of it; it
// returns the proxy and its address, which is the registry name the builds use.
func authRegistry(t *testing.T) (*testenv.Proxy, string) {
	t.Helper()
	testenv.RequireTools(t, testenv.RegistryBinary, "skopeo")
	reg, err := testenv.StartAuthRegistry(authUser, authPassword)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if _, err := testenv.PushBusybox(reg); err != nil {
		t.Fatal(err)
	}
	p, err := testenv.StartProxy(reg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, p.Addr()
}

// dockerConfig writes a config.json giving user:password for host, as `docker login` would, and
// returns the DOCKER_CONFIG environment entry pointing at it.
func dockerConfig(t *testing.T, host, user, password string) []string {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"DOCKER_CONFIG=" + dir}
}

// authProject is a context whose FROM names base and whose layers are new to every registry.
func authProject(t *testing.T, e *env, base string) (dir, want string) {
	t.Helper()
	want = fmt.Sprintf("%s %d\n", t.Name(), time.Now().UnixNano())
	return e.project("app", map[string]string{
		"Dockerfile": "FROM " + base + "\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n",
		"a.txt":      want,
	}), want
}

// authBuild runs a build with the given DOCKER_CONFIG and the short registry timeout.
func authBuild(e *env, cfg []string, args ...string) result {
	e.t.Helper()
	return e.runIn("", append(cfg, faultTimeout...), append([]string{"build", "--progress=plain"}, args...)...)
}

// Pull, push, cache export and cache import against a registry that requires a login, with the
// credentials in $DOCKER_CONFIG/config.json.
func TestAuthRegistryWithDockerConfig(t *testing.T) {
	p, reg := authRegistry(t)
	cfg := dockerConfig(t, reg, authUser, authPassword)
	a := newEnv(t)
	ctx, want := authProject(t, a, reg+"/busybox:latest")
	img, cache := reg+"/app:1", reg+"/app-cache:1"
	r := authBuild(a, cfg, "--cache-to", "type=registry,ref="+cache+",mode=max", "--output", "type=image", "--push", "-t", img, ctx)
	if r.err != nil {
		t.Fatalf("build with credentials: %v\n%s", r.err, r.out)
	}
	if out, err := testenv.SkopeoOutput("inspect", "--tls-verify=false", "--creds", authUser+":"+authPassword, "docker://"+img); err != nil {
		t.Fatalf("pushed image not in the registry: %v\n%s", err, out)
	}

	// Another runner imports the cache: every step cached, the image's file intact.
	b := newEnv(t)
	dest := filepath.Join(b.dir, "out")
	r = authBuild(b, cfg, "--cache-from", cache, "-o", "type=local,dest="+dest, ctx)
	if r.err != nil {
		t.Fatalf("runner B: %v\n%s", r.err, r.out)
	}
	requireCached(t, r)
	if got := readFile(t, filepath.Join(dest, "b.txt")); got != want {
		t.Errorf("/b.txt = %q, want %q", got, want)
	}
	if s := p.Stats(); s.Requests == 0 {
		t.Errorf("no request went through the proxy")
	}
}

// Wrong or missing credentials fail at once with a line naming the registry and the login to
// run, after at most one re-authentication per operation: the proxy counts the requests.
func TestAuthWrongPassword(t *testing.T) {
	p, reg := authRegistry(t)
	loginHint := regexp.QuoteMeta("unauthorized: "+reg+" refused the credentials strata found for it (or it needs some and there are none): run `docker login "+reg+"`") +
		` \(strata reads \$DOCKER_CONFIG/config.json, default ~/.docker/config.json\)$`
	for name, cfg := range map[string][]string{
		"wrong":   dockerConfig(t, reg, authUser, "not-the-password"),
		"missing": dockerConfig(t, "elsewhere.example:5000", authUser, authPassword),
	} {
		t.Run("pull-"+name, func(t *testing.T) {
			e := newEnv(t)
			ctx, _ := authProject(t, e, reg+"/busybox:latest")
			p.Reset()
			r := authBuild(e, cfg, ctx)
			if r.err == nil {
				t.Fatalf("build succeeded with %s credentials:\n%s", name, r.out)
			}
			line := lineWith(t, r, "ERROR: ")
			if !regexp.MustCompile(regexp.QuoteMeta(reg+"/busybox:latest") + `.*: ` + loginHint).MatchString(line) {
				t.Errorf("error line %q does not name the registry and the login", line)
			}
			// One resolve: a ping and a manifest request per try, two tries (one re-authentication).
			if n := p.Stats().Requests; n > 6 {
				t.Errorf("%d requests for a refused login; want at most 6 (no retry storm)", n)
			}
		})
	}

	t.Run("cache", func(t *testing.T) {
		// The base comes from the open test registry; only the cache needs the login.
		e := newEnv(t)
		cfg := dockerConfig(t, reg, authUser, "not-the-password")
		ctx, _ := authProject(t, e, baseRef)
		cache := reg + "/wrong-cache:1"
		p.Reset()
		r := authBuild(e, cfg, "--cache-from", cache, ctx)
		if r.err != nil {
			t.Fatalf("a cache import refused by the registry failed the build: %v\n%s", r.err, r.out)
		}
		line := lineWith(t, r, "WARNING: cache "+cache+" not imported: ")
		if !regexp.MustCompile(loginHint).MatchString(line) {
			t.Errorf("warning %q does not name the registry and the login", line)
		}
		r = authBuild(e, cfg, "--cache-to", "type=registry,ref="+cache, ctx)
		if r.err == nil {
			t.Fatalf("cache export with a wrong password succeeded:\n%s", r.out)
		}
		line = lineWith(t, r, "ERROR: --cache-to ")
		if !regexp.MustCompile(loginHint).MatchString(line) {
			t.Errorf("error %q does not name the registry and the login", line)
		}
		if n := p.Stats().Requests; n > 20 {
			t.Errorf("%d requests for two refused operations; want at most 20 (no retry storm)", n)
		}
	})
}

// A 401 in the middle of a push (a token that expired, a session the registry dropped) costs one
// re-authentication, not the build: the push completes and the registry has the image.
func TestAuth401MidPush(t *testing.T) {
	p, reg := authRegistry(t)
	cfg := dockerConfig(t, reg, authUser, authPassword)
	e := newEnv(t)
	ctx, _ := authProject(t, e, reg+"/busybox:latest")
	img := reg + "/midpush:1"
	p.Inject(testenv.Fault{Method: "PUT", Path: regexp.MustCompile(`^/v2/midpush/blobs/uploads/`), Times: 1, Status: 401})
	r := authBuild(e, cfg, "--output", "type=image", "--push", "-t", img, ctx)
	if r.err != nil {
		t.Fatalf("push with one 401 mid-upload: %v\n%s", r.err, r.out)
	}
	if out, err := testenv.SkopeoOutput("inspect", "--tls-verify=false", "--creds", authUser+":"+authPassword, "docker://"+img); err != nil {
		t.Fatalf("image not in the registry: %v\n%s", err, out)
	}
	// The fault was used up, so the upload it hit really was tried again.
	p.Inject(testenv.Fault{Method: "PUT", Path: regexp.MustCompile(`^/v2/midpush/blobs/uploads/`), Status: 401})
	e2 := newEnv(t)
	ctx2, _ := authProject(t, e2, reg+"/busybox:latest")
	p.Reset()
	r = authBuild(e2, cfg, "--output", "type=image", "--push", "-t", img, ctx2)
	if r.err == nil {
		t.Fatalf("push succeeded although every upload PUT got a 401:\n%s", r.out)
	}
	if !strings.Contains(r.out, "docker login "+reg) {
		t.Errorf("a push refused for good does not say how to log in:\n%s", r.out)
	}
}
