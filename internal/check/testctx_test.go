package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeContext creates a context directory from "-- path --" sections (the .context files of
// the corpus); a path ending in "/" is an empty directory.
func writeContext(t *testing.T, spec string) string {
	t.Helper()
	dir := t.TempDir()
	var cur string
	var body strings.Builder
	flush := func() {
		if cur == "" {
			return
		}
		p := filepath.Join(dir, filepath.FromSlash(cur))
		if strings.HasSuffix(cur, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range strings.SplitAfter(spec, "\n") {
		if strings.HasPrefix(l, "-- ") && strings.HasSuffix(strings.TrimSpace(l), " --") {
			flush()
			cur = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "-- "), " --")
			body.Reset()
			continue
		}
		body.WriteString(l)
	}
	flush()
	return dir
}

func ctxFiles(files map[string]string) string {
	var b strings.Builder
	for p, c := range files {
		if c != "" && !strings.HasSuffix(c, "\n") {
			c += "\n"
		}
		b.WriteString("-- " + p + " --\n" + c)
	}
	return b.String()
}

// lint checks df; files, when not nil, become the context.
func lint(t *testing.T, df string, files map[string]string) *Report {
	t.Helper()
	o := Options{Path: "Dockerfile", Dockerfile: []byte(df)}
	if files != nil {
		o.Context = writeContext(t, ctxFiles(files))
	}
	r, err := Check(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func lines(r *Report, rule string) []int {
	var out []int
	for _, f := range r.Findings {
		if f.Rule == rule {
			out = append(out, f.Line)
		}
	}
	return out
}
