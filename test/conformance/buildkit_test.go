package conformance

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/tools/txtar"
)

// buildkit is a buildkitd started for -record, with the test registry allowed over plain HTTP.
type buildkit struct {
	ctl, sock string
	cmd       *exec.Cmd
}

func startBuildKit(dir, regAddr string) (*buildkit, error) {
	bin := os.Getenv("STRATA_BUILDKIT_BIN")
	if bin == "" {
		bin = "/var/cache/strata-bench/bin"
	}
	b := &buildkit{ctl: filepath.Join(bin, "buildctl"), sock: filepath.Join(dir, "buildkitd.sock")}
	conf := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "[registry.%q]\n  http = true\n  insecure = true\n", regAddr), 0o644); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(os.TempDir(), "strata-conformance-buildkitd.log"))
	if err != nil {
		return nil, err
	}
	b.cmd = exec.Command(filepath.Join(bin, "buildkitd"), "--root", filepath.Join(dir, "buildkit"),
		"--addr", "unix://"+b.sock, "--config", conf, "--oci-worker=true", "--containerd-worker=false",
		"--oci-worker-net=host")
	b.cmd.Stdout, b.cmd.Stderr = log, log
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start buildkitd (bench/run builds it into %s): %w", bin, err)
	}
	for range 300 {
		if exec.Command(b.ctl, "--addr", "unix://"+b.sock, "debug", "workers").Run() == nil {
			return b, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.stop()
	return nil, fmt.Errorf("buildkitd did not come up; see %s", log.Name())
}

func (b *buildkit) stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
	}
}

// buildctlArgs turns the strata/buildx flags a case uses into buildctl's.
func buildctlArgs(args []string, ctx string) ([]string, error) {
	out := []string{"--local", "context=" + ctx}
	dfDir, dfName := ctx, "Dockerfile"
	for i := 0; i < len(args); i++ {
		a := args[i]
		flag, val, hasVal := strings.Cut(a, "=")
		next := func() (string, error) {
			if hasVal {
				return val, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("%s needs a value", a)
			}
			i++
			return args[i], nil
		}
		if !strings.HasPrefix(flag, "-") {
			return nil, fmt.Errorf("unexpected argument %q", a)
		}
		switch flag {
		case "--no-cache":
			out = append(out, "--no-cache")
			continue
		}
		v, err := next()
		if err != nil {
			return nil, err
		}
		switch flag {
		case "-f", "--file":
			p := v
			if !filepath.IsAbs(p) {
				p = filepath.Join(ctx, p)
			}
			dfDir, dfName = filepath.Dir(p), filepath.Base(p)
		case "--build-arg":
			out = append(out, "--opt", "build-arg:"+v)
		case "--target":
			out = append(out, "--opt", "target="+v)
		case "--platform":
			out = append(out, "--opt", "platform="+v)
		case "--label":
			out = append(out, "--opt", "label:"+v)
		case "--secret", "--ssh", "--allow":
			out = append(out, flag, v)
		case "--network":
			out = append(out, "--opt", "force-network-mode="+v)
		case "--add-host":
			out = append(out, "--opt", "add-hosts="+v)
		case "--build-context":
			name, src, _ := strings.Cut(v, "=")
			if strings.Contains(src, "://") {
				out = append(out, "--opt", "context:"+name+"="+src)
			} else {
				out = append(out, "--local", name+"="+src, "--opt", "context:"+name+"=local:"+name)
			}
		default:
			return nil, fmt.Errorf("no buildctl translation for %s", flag)
		}
	}
	return append(out, "--local", "dockerfile="+dfDir, "--opt", "filename="+dfName), nil
}

// recordMu serialises writes of case files (each case writes only its own, but keep it simple).
var recordMu sync.Mutex

// recordCase builds c with BuildKit and writes BuildKit's result into the case's want sections.
func recordCase(t *testing.T, c *testCase, ctx string) {
	args, err := buildctlArgs(c.args(ctx), ctx)
	if err != nil {
		t.Fatalf("%s: %v", c.path, err)
	}
	tarPath := filepath.Join(t.TempDir(), "out.tar")
	full := append([]string{"--addr", "unix://" + bk.sock, "build", "--progress=plain", "--frontend", "dockerfile.v0",
		"--output", "type=oci,dest=" + tarPath + ",name=conformance:1"}, args...)
	cmd := exec.Command(bk.ctl, full...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	runErr := cmd.Run()
	if _, wantFail := c.sections["want/fail"]; wantFail {
		if runErr == nil {
			t.Fatalf("BuildKit builds it, but the case expects a failure (want/fail)")
		}
		return
	}
	if runErr != nil {
		t.Fatalf("BuildKit failed: %v\n%s\n(add a want/fail section if that is the point)", runErr, buf.String())
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if err := os.MkdirAll(layout, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", tarPath, "-C", layout).CombinedOutput(); err != nil {
		t.Fatalf("untar BuildKit's archive: %v\n%s", err, out)
	}
	got := inspect(t, layout)
	recordMu.Lock()
	defer recordMu.Unlock()
	setSection(c.ar, "want/fs", got.fs)
	setSection(c.ar, "want/config", got.config)
	if err := os.WriteFile(c.path, txtar.Format(c.ar), 0o644); err != nil {
		t.Fatal(err)
	}
}

func setSection(ar *txtar.Archive, name, data string) {
	for i := range ar.Files {
		if ar.Files[i].Name == name {
			ar.Files[i].Data = []byte(data)
			return
		}
	}
	ar.Files = append(ar.Files, txtar.File{Name: name, Data: []byte(data)})
}
