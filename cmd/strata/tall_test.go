package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// A Dockerfile of 1,000 layers builds (overlayfs stacks at most 500 lower directories), and a
// file deleted in one layer stays deleted whether the layer ends up directly in the stack or in
// the flattened bottom.
func TestThousandLayers(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 steps")
	}
	const n = 1000
	e := newEnv(t)
	files := map[string]string{}
	var df strings.Builder
	df.WriteString("FROM " + testReg.Addr() + "/busybox:latest\n")
	for i := range n {
		name := fmt.Sprintf("f%d", i)
		files[name] = name + "\n"
		fmt.Fprintf(&df, "COPY %s /d/%s\n", name, name)
		switch i {
		case 10:
			df.WriteString("RUN rm /d/f3\n") // ends up in the flattened bottom
		case 900:
			df.WriteString("RUN rm /d/f5\n") // a whiteout above the flattened bottom
		}
	}
	df.WriteString("RUN ls /d | wc -l > /count && cat /d/f0 /d/f999 > /ends\n")
	files["Dockerfile"] = df.String()
	ctx := e.project("tall", files)
	dest := filepath.Join(e.dir, "out")
	r := e.build("--progress=quiet", "-o", "type=local,dest="+dest, ctx)
	if got := strings.TrimSpace(readFile(t, filepath.Join(dest, "count"))); got != fmt.Sprint(n-2) {
		t.Errorf("/d holds %s files, want %d\n%s", got, n-2, r.out)
	}
	if got := readFile(t, filepath.Join(dest, "ends")); got != "f0\nf999\n" {
		t.Errorf("/ends is %q", got)
	}
}
