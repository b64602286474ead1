package remotecache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ParseSpec accepts buildx's --cache-from/--cache-to CSV syntax and fills in the defaults.
func TestParseSpecAccepts(t *testing.T) {
	abs := filepath.Join(t.TempDir(), "cache")
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		in     string
		export bool
		want   Spec
	}{
		{
			name: "bare ref is a registry (from)",
			in:   "localhost:5000/app/cache:main",
			want: Spec{Type: "registry", Ref: "localhost:5000/app/cache:main", Mode: "min", MountsMaxSize: 2 << 30},
		},
		{
			name: "bare ref is a registry (to)", export: true,
			in:   "example.com/cache",
			want: Spec{Type: "registry", Ref: "example.com/cache", Mode: "min", MountsMaxSize: 2 << 30},
		},
		{
			name: "ref= without type= defaults to registry",
			in:   "ref=r.example/c:1",
			want: Spec{Type: "registry", Ref: "r.example/c:1", Mode: "min", MountsMaxSize: 2 << 30},
		},
		{
			name: "registry with every strata attribute", export: true,
			in:   "type=registry,ref=R,mode=max,ignore-error=true,mounts=true,mounts-max-size=1GB",
			want: Spec{Type: "registry", Ref: "R", Mode: "max", IgnoreError: true, Mounts: true, MountsMaxSize: 1 << 30},
		},
		{
			name: "registry mode=min explicit, compression kept", export: true,
			in:   "type=registry,ref=R,mode=min,compression=zstd,compression-level=3,force-compression=true,oci-mediatypes=true,image-manifest=true",
			want: Spec{Type: "registry", Ref: "R", Mode: "min", Compression: "zstd", MountsMaxSize: 2 << 30},
		},
		{
			name: "registry gzip, explicit false bools", export: true,
			in:   "type=registry,ref=R,compression=gzip,ignore-error=false,mounts=false",
			want: Spec{Type: "registry", Ref: "R", Mode: "min", Compression: "gzip", MountsMaxSize: 2 << 30},
		},
		{
			name: "mounts-max-size with a binary suffix", export: true,
			in:   "type=registry,ref=R,mounts=true,mounts-max-size=512m",
			want: Spec{Type: "registry", Ref: "R", Mode: "min", Mounts: true, MountsMaxSize: 512 << 20},
		},
		{
			name: "local src= for import, absolute",
			in:   "type=local,src=" + abs,
			want: Spec{Type: "local", Dir: abs, Mode: "min", MountsMaxSize: 2 << 30},
		},
		{
			name: "local dest= for export, absolute", export: true,
			in:   "type=local,dest=" + abs + ",mode=max",
			want: Spec{Type: "local", Dir: abs, Mode: "max", MountsMaxSize: 2 << 30},
		},
		{
			name: "local relative src= is made absolute",
			in:   "type=local,src=rel/cache",
			want: Spec{Type: "local", Dir: filepath.Join(wd, "rel/cache"), Mode: "min", MountsMaxSize: 2 << 30},
		},
		{
			name: "inline for export", export: true,
			in:   "type=inline",
			want: Spec{Type: "inline", Mode: "min", MountsMaxSize: 2 << 30},
		},
		{
			name: "inline mode=min for export", export: true,
			in:   "type=inline,mode=min",
			want: Spec{Type: "inline", Mode: "min", MountsMaxSize: 2 << 30},
		},
		{
			name: "spaces around keys are tolerated", export: true,
			in:   "type=registry, ref=R, mode=max",
			want: Spec{Type: "registry", Ref: "R", Mode: "max", MountsMaxSize: 2 << 30},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseSpec(c.in, c.export)
			if err != nil {
				t.Fatalf("ParseSpec(%q, %v): %v", c.in, c.export, err)
			}
			if got != c.want {
				t.Errorf("ParseSpec(%q, %v)\n got %+v\nwant %+v", c.in, c.export, got, c.want)
			}
			if c.want.Type == "local" && !filepath.IsAbs(got.Dir) {
				t.Errorf("local Dir %q is not absolute", got.Dir)
			}
		})
	}
}

func TestParseSpecDefaults(t *testing.T) {
	if DefaultMountsMaxSize != 2<<30 {
		t.Errorf("DefaultMountsMaxSize = %d, want 2GiB (%d)", DefaultMountsMaxSize, int64(2<<30))
	}
	for _, export := range []bool{false, true} {
		for _, in := range []string{"r.example/c", "type=registry,ref=r.example/c"} {
			sp, err := ParseSpec(in, export)
			if err != nil {
				t.Fatalf("ParseSpec(%q, %v): %v", in, export, err)
			}
			if sp.Mode != "min" || sp.MountsMaxSize != DefaultMountsMaxSize || sp.Mounts || sp.IgnoreError || sp.Compression != "" {
				t.Errorf("ParseSpec(%q, %v) = %+v, want mode=min, MountsMaxSize=2GB, everything else off", in, export, sp)
			}
		}
	}
}

// Every rejected value gets an error that names the flag and the offending attribute or value.
func TestParseSpecErrors(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		export bool
		want   []string // substrings of the error
	}{
		{name: "empty", in: "", want: []string{"--cache-from", "empty"}},
		{name: "unknown type", in: "type=nope,ref=x", export: true, want: []string{"--cache-to", `"nope"`, "unknown cache type"}},
		{name: "unknown type (from)", in: "type=s3,bucket=b", want: []string{"--cache-from", `"s3"`}},
		{name: "unknown attribute", in: "type=registry,ref=x,foo=bar", want: []string{"--cache-from", `"foo"`, "unknown attribute", "type=registry"}},
		{name: "unknown attribute without type", in: "foo=bar", want: []string{`"foo"`, "unknown attribute"}},
		{name: "unknown attribute for local", in: "type=local,src=/x,ref=y", want: []string{`"ref"`, "type=local"}},
		{name: "inline takes no mounts", in: "type=inline,mounts=true", export: true, want: []string{`"mounts"`, "type=inline"}},
		{name: "not key=value", in: "type=registry,ref=x,oops", export: true, want: []string{`"oops"`, "KEY=VALUE"}},
		{name: "mode=medium", in: "type=registry,ref=x,mode=medium", export: true, want: []string{"mode=medium", "min or max"}},
		{name: "compression=lz4", in: "type=registry,ref=x,compression=lz4", export: true, want: []string{"compression=lz4", "gzip or zstd"}},
		{name: "compression=uncompressed", in: "type=registry,ref=x,compression=uncompressed", export: true, want: []string{"compression=uncompressed", "not supported"}},
		{name: "compression=estargz", in: "type=registry,ref=x,compression=estargz", export: true, want: []string{"compression=estargz"}},
		{name: "ignore-error=maybe", in: "type=registry,ref=x,ignore-error=maybe", export: true, want: []string{"ignore-error=maybe", "true or false"}},
		{name: "mounts=yes", in: "type=registry,ref=x,mounts=yes", export: true, want: []string{"mounts=yes", "true or false"}},
		{name: "force-compression=1", in: "type=registry,ref=x,force-compression=1", export: true, want: []string{"force-compression=1"}},
		{name: "mounts-max-size=lots", in: "type=registry,ref=x,mounts-max-size=lots", export: true, want: []string{"mounts-max-size=lots"}},
		{name: "missing ref", in: "type=registry,mode=max", export: true, want: []string{"--cache-to", "type=registry", "ref="}},
		{name: "empty ref", in: "type=registry,ref=", want: []string{"--cache-from", "ref="}},
		{name: "local without src", in: "type=local", want: []string{"--cache-from", "type=local", "src="}},
		{name: "local without dest", in: "type=local", export: true, want: []string{"--cache-to", "type=local", "dest="}},
		{name: "local import with dest", in: "type=local,dest=/x", want: []string{"--cache-from", "src="}},
		{name: "local export with src", in: "type=local,src=/x", export: true, want: []string{"--cache-to", "dest="}},
		{name: "local import with both", in: "type=local,src=/x,dest=/y", want: []string{"src=", "not dest="}},
		{name: "local export with both", in: "type=local,src=/x,dest=/y", export: true, want: []string{"dest=", "not src="}},
		{name: "oci-mediatypes=false", in: "type=registry,ref=x,oci-mediatypes=false", export: true, want: []string{"oci-mediatypes=false"}},
		{name: "image-manifest=false", in: "type=registry,ref=x,image-manifest=false", export: true, want: []string{"image-manifest=false"}},
		{name: "oci-mediatypes=nah", in: "type=registry,ref=x,oci-mediatypes=nah", export: true, want: []string{"oci-mediatypes=nah"}},
		{name: "inline for import", in: "type=inline", want: []string{"--cache-from", "inline", "type=registry"}},
		{name: "inline with mode=max", in: "type=inline,mode=max", export: true, want: []string{"--cache-to", "mode=max", "inline"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sp, err := ParseSpec(c.in, c.export)
			if err == nil {
				t.Fatalf("ParseSpec(%q, %v) = %+v, want an error", c.in, c.export, sp)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("ParseSpec(%q, %v) error %q lacks %q", c.in, c.export, msg, w)
				}
			}
		})
	}
}

// The unknown-attribute error lists the attributes the type does take, so a typo can be fixed
// from the message alone.
func TestParseSpecUnknownAttributeListsKnown(t *testing.T) {
	_, err := ParseSpec("type=registry,ref=x,mode=max,mount=true", true)
	if err == nil {
		t.Fatal("mount=true (typo of mounts) accepted")
	}
	for _, w := range []string{`"mount"`, "mounts", "mounts-max-size", "ignore-error"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	// With two unknown attributes the error is the same every time (sorted), not map order.
	first := ""
	for i := 0; i < 20; i++ {
		_, err := ParseSpec("type=registry,ref=x,zzz=1,aaa=2,mmm=3", false)
		if err == nil {
			t.Fatal("unknown attributes accepted")
		}
		if first == "" {
			first = err.Error()
		} else if err.Error() != first {
			t.Fatalf("error changes between calls: %q vs %q", first, err)
		}
	}
	if !strings.Contains(first, `"aaa"`) {
		t.Errorf("error %q does not name the first unknown attribute in order", first)
	}
}

func TestSpecString(t *testing.T) {
	for _, c := range []struct {
		sp   Spec
		want string
	}{
		{Spec{Type: "registry", Ref: "r/c:1"}, "r/c:1"},
		{Spec{Type: "local", Dir: "/d"}, "/d"},
		{Spec{Type: "inline"}, "inline"},
	} {
		if got := c.sp.String(); got != c.want {
			t.Errorf("%+v.String() = %q, want %q", c.sp, got, c.want)
		}
	}
}
