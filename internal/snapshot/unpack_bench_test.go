package snapshot

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// manySmallFilesTar is a layer shaped like a node_modules tree or a Debian base: nested
// directories, a few thousand small files, some symlinks and hardlinks.
func manySmallFilesTar(b *testing.B, dirs, filesPerDir int) ([]byte, int64) {
	b.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := bytes.Repeat([]byte("module.exports = 1;\n"), 50) // 1 KB
	var total int64
	put := func(h *tar.Header, data []byte) {
		h.ModTime, h.Uname, h.Gname = testTime, "", ""
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			b.Fatal(err)
		}
		total += int64(len(data))
	}
	put(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	for d := range dirs {
		top := fmt.Sprintf("usr/lib/node_modules/pkg%03d/", d)
		for _, dd := range []string{"usr/", "usr/lib/", "usr/lib/node_modules/"} {
			if d == 0 {
				put(&tar.Header{Name: dd, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
			}
		}
		put(&tar.Header{Name: top, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		put(&tar.Header{Name: top + "lib/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		for f := range filesPerDir {
			name := fmt.Sprintf("%slib/f%03d.js", top, f)
			put(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body)
		}
		put(&tar.Header{Name: top + "index.js", Typeflag: tar.TypeSymlink, Linkname: "lib/f000.js", Mode: 0o777}, nil)
		put(&tar.Header{Name: top + "copy.js", Typeflag: tar.TypeLink, Linkname: top + "lib/f001.js"}, nil)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes(), total
}

// BenchmarkUnpackManySmallFiles unpacks a 10,000-file layer (about 10 MB of content): the cost
// is per entry (path resolution, metadata syscalls), not per byte.
func BenchmarkUnpackManySmallFiles(b *testing.B) {
	needRoot(b)
	data, total := manySmallFilesTar(b, 100, 100)
	parent := b.TempDir()
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		dir := filepath.Join(parent, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := Unpack(bytes.NewReader(data), dir); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10_000, "ns/file")
}
