package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bad --cache-from, --cache-to or -o value is refused before anything runs: a non-zero exit,
// one ERROR line naming the flag and the offending attribute or value, nothing written where the
// value pointed, and a store that still builds (fully cached, same digest) afterwards.
func TestCacheFlagErrors(t *testing.T) {
	e := newEnv(t)
	good := newGoodBuild(e)
	out := func(name string) string { return filepath.Join(e.dir, "out-"+name) }

	cases := []struct {
		name      string
		args      []string
		want      []string // substrings of the ERROR line
		notExists []string // paths the build must not create
	}{
		{
			name: "cache-to unknown type",
			args: []string{"--cache-to", "type=nope"},
			want: []string{"--cache-to", "nope", "unknown cache type"},
		},
		{
			name: "cache-from unknown attribute",
			args: []string{"--cache-from", "type=registry,ref=x,foo=1"},
			want: []string{"--cache-from", `"foo"`, "unknown attribute"},
		},
		{
			name: "output unknown attribute",
			args: []string{"-o", "type=image,bogus=1"},
			want: []string{"--output", `"bogus"`, "unknown attribute"},
		},
		{
			name:      "cache-to local unknown attribute",
			args:      []string{"--cache-to", "type=local,dest=" + out("cache1") + ",foo=1"},
			want:      []string{"--cache-to", `"foo"`},
			notExists: []string{out("cache1")},
		},
		{
			name:      "cache-to mode=medium",
			args:      []string{"--cache-to", "type=local,dest=" + out("cache2") + ",mode=medium"},
			want:      []string{"--cache-to", "mode=medium"},
			notExists: []string{out("cache2")},
		},
		{
			name: "cache-to ignore-error=maybe",
			args: []string{"--cache-to", "type=registry,ref=" + testReg.Addr() + "/cacheflags/c:1,ignore-error=maybe"},
			want: []string{"--cache-to", "ignore-error=maybe"},
		},
		{
			name: "cache-to inline with mode=max",
			args: []string{"--cache-to", "type=inline,mode=max"},
			want: []string{"--cache-to", "mode=max"},
		},
		{
			name: "cache-from inline",
			args: []string{"--cache-from", "type=inline"},
			want: []string{"--cache-from", "inline"},
		},
		{
			name: "cache-from local with dest",
			args: []string{"--cache-from", "type=local,dest=" + out("cache3")},
			want: []string{"--cache-from", "src="},
		},
		{
			name:      "output local unknown attribute",
			args:      []string{"-o", "type=local,dest=" + out("local") + ",bogus=1"},
			want:      []string{"--output", `"bogus"`},
			notExists: []string{out("local")},
		},
		{
			name:      "output tar=maybe",
			args:      []string{"-o", "type=oci,dest=" + out("img.tar") + ",tar=maybe"},
			want:      []string{"--output", "tar=maybe"},
			notExists: []string{out("img.tar")},
		},
		{
			name: "good cache-to next to a bad one",
			args: []string{"--cache-to", "type=local,dest=" + out("cache4"), "--cache-to", "type=registry,ref=x,compression=lz4"},
			want: []string{"--cache-to", "compression=lz4"},
			// The valid one is not exported either: the flags fail before the build.
			notExists: []string{out("cache4")},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.run(append(append([]string{"build", "--progress=plain", "-t", "good:1"}, c.args...), good.ctx)...)
			if r.err == nil || r.code == 0 {
				t.Fatalf("build succeeded (code %d), want failure:\n%s", r.code, r.out)
			}
			line := errLine(t, r.out)
			t.Log(line)
			for _, w := range c.want {
				if !strings.Contains(line, w) {
					t.Errorf("error line lacks %q:\n%s\nfull output:\n%s", w, line, r.out)
				}
			}
			// Refused up front: the whole output is the one ERROR line (no steps, no usage).
			if got := strings.TrimRight(r.out, "\n"); got != line {
				t.Errorf("output is more than the ERROR line:\n%s", r.out)
			}
			if strings.Contains(r.out, "panic") || strings.Contains(r.out, "goroutine ") {
				t.Errorf("panic:\n%s", r.out)
			}
			for _, p := range c.notExists {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was created by a build whose flags were refused", p)
				}
			}
			good.check(e, c.name)
		})
	}
}

// The same values, fixed, are accepted: the errors above are about the attribute, not the flag.
func TestCacheFlagFixedValuesBuild(t *testing.T) {
	e := newEnv(t)
	good := newGoodBuild(e)
	cache := filepath.Join(e.dir, "cache")
	local := filepath.Join(e.dir, "local")
	r := e.build("-t", "good:1",
		"--cache-to", "type=local,dest="+cache+",mode=max,ignore-error=false",
		"-o", "type=image,compression=gzip",
		"-o", "type=local,dest="+local,
		good.ctx)
	for name, st := range stepStates(r.out) {
		if st != "CACHED" {
			t.Errorf("step %q %s, want CACHED\n%s", name, st, r.out)
		}
	}
	if _, err := os.Stat(filepath.Join(cache, "index.json")); err != nil {
		t.Errorf("--cache-to type=local wrote no index.json: %v\n%s", err, r.out)
	}
	if got := readFile(t, filepath.Join(local, "out", "a.txt")); got != "a\n" {
		t.Errorf("-o type=local: out/a.txt = %q", got)
	}
	// And read back.
	e2 := newEnv(t)
	r = e2.build("--cache-from", "type=local,src="+cache, good.ctx)
	for name, st := range stepStates(r.out) {
		if st == "MISS" {
			t.Errorf("with --cache-from the local cache, step %q missed\n%s", name, r.out)
		}
	}
}
