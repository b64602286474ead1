package build

import (
	"reflect"
	"strings"
	"testing"
)

// ParseOutputs reads -o values in buildx's syntax (plus --push) into outputs.
func TestParseOutputsAccepts(t *testing.T) {
	cases := []struct {
		name  string
		specs []string
		push  bool
		want  []Output
	}{
		{name: "default is the local image", want: []Output{{Type: "image"}}},
		{name: "type=image", specs: []string{"type=image"}, want: []Output{{Type: "image", Tar: true}}},
		{name: "type=image,push=true is a registry push", specs: []string{"type=image,push=true"}, want: []Output{{Type: "registry", Tar: true}}},
		{name: "type=image,push=false stays an image", specs: []string{"type=image,push=false"}, want: []Output{{Type: "image", Tar: true}}},
		{name: "type=registry", specs: []string{"type=registry"}, want: []Output{{Type: "registry", Tar: true}}},
		{name: "type=registry,push=false is an image", specs: []string{"type=registry,push=false"}, want: []Output{{Type: "image", Tar: true}}},
		{name: "single name", specs: []string{"type=image,name=r.example/a:1"}, want: []Output{{Type: "image", Tar: true, Names: []string{"r.example/a:1"}}}},
		{name: "compression=zstd kept", specs: []string{"type=registry,compression=zstd,compression-level=3,force-compression=true"}, want: []Output{{Type: "registry", Tar: true, Compression: "zstd"}}},
		{name: "compression=gzip kept", specs: []string{"type=oci,dest=/o.tar,compression=gzip"}, want: []Output{{Type: "oci", Dest: "/o.tar", Tar: true, Compression: "gzip"}}},
		{name: "oci with dest", specs: []string{"type=oci,dest=/out/img.tar"}, want: []Output{{Type: "oci", Dest: "/out/img.tar", Tar: true}}},
		{name: "oci tar=false", specs: []string{"type=oci,dest=/out/layout,tar=false"}, want: []Output{{Type: "oci", Dest: "/out/layout", Tar: false}}},
		{name: "docker with dest", specs: []string{"type=docker,dest=-"}, want: []Output{{Type: "docker", Dest: "-", Tar: true}}},
		{name: "oci-mediatypes=true accepted", specs: []string{"type=image,oci-mediatypes=true,store=true,unpack=false"}, want: []Output{{Type: "image", Tar: true}}},
		{name: "local with dest", specs: []string{"type=local,dest=out"}, want: []Output{{Type: "local", Dest: "out", Tar: true}}},
		{name: "bare path is local", specs: []string{"out/dir"}, want: []Output{{Type: "local", Dest: "out/dir", Tar: true}}},
		{name: "bare - is local stdout", specs: []string{"-"}, want: []Output{{Type: "local", Dest: "-", Tar: true}}},
		{name: "--push alone is a registry output", push: true, want: []Output{{Type: "registry"}}},
		{name: "--push appends registry after -o", specs: []string{"type=oci,dest=/o.tar"}, push: true, want: []Output{{Type: "oci", Dest: "/o.tar", Tar: true}, {Type: "registry"}}},
		{name: "several -o in order", specs: []string{"type=local,dest=a", "type=image"}, want: []Output{{Type: "local", Dest: "a", Tar: true}, {Type: "image", Tar: true}}},
		{name: "spaces around keys are tolerated", specs: []string{"type=oci, dest=/o.tar"}, want: []Output{{Type: "oci", Dest: "/o.tar", Tar: true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseOutputs(c.specs, c.push)
			if err != nil {
				t.Fatalf("ParseOutputs(%q, %v): %v", c.specs, c.push, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("ParseOutputs(%q, %v)\n got %+v\nwant %+v", c.specs, c.push, got, c.want)
			}
		})
	}
}

// name=a,b gives two names, as in buildx (where the value is quoted CSV: "name=a,b").
func TestParseOutputsSeveralNames(t *testing.T) {
	want := []string{"r.example/a:1", "r.example/b:2"}
	for _, spec := range []string{
		`type=image,name=r.example/a:1,r.example/b:2`,
		`type=image,"name=r.example/a:1,r.example/b:2"`,
	} {
		got, err := ParseOutputs([]string{spec}, false)
		if err != nil {
			t.Errorf("ParseOutputs(%q): %v", spec, err)
			continue
		}
		if len(got) != 1 || !reflect.DeepEqual(got[0].Names, want) {
			t.Errorf("ParseOutputs(%q) = %+v, want one image output with Names %q", spec, got, want)
		}
	}
}

// Every rejected value gets a one-line error naming --output and the offending type, attribute
// or value.
func TestParseOutputsErrors(t *testing.T) {
	cases := []struct {
		name string
		spec string
		want []string
	}{
		{name: "unknown type", spec: "type=bogus,dest=x", want: []string{"--output", `"bogus"`, "unknown type"}},
		{name: "missing type", spec: "dest=x", want: []string{"--output", "missing type="}},
		{name: "empty type", spec: "type=,dest=x", want: []string{"--output", "type="}},
		{name: "unknown attribute image", spec: "type=image,bogus=1", want: []string{"--output", `"bogus"`, "unknown attribute", "type=image"}},
		{name: "unknown attribute registry", spec: "type=registry,dest=x", want: []string{`"dest"`, "type=registry"}},
		{name: "unknown attribute local", spec: "type=local,dest=x,name=y", want: []string{`"name"`, "type=local"}},
		{name: "tar not for image", spec: "type=image,tar=false", want: []string{`"tar"`, "type=image"}},
		{name: "tar=maybe", spec: "type=oci,dest=x,tar=maybe", want: []string{"tar=maybe", "true or false"}},
		{name: "push=yes", spec: "type=image,push=yes", want: []string{"push=yes", "true or false"}},
		{name: "oci-mediatypes=false", spec: "type=image,oci-mediatypes=false", want: []string{"oci-mediatypes=false"}},
		{name: "oci-mediatypes=0", spec: "type=registry,oci-mediatypes=0", want: []string{"oci-mediatypes=0"}},
		{name: "compression=lz4", spec: "type=image,compression=lz4", want: []string{"compression=lz4", "gzip or zstd"}},
		{name: "oci needs dest", spec: "type=oci", want: []string{"type=oci", "dest="}},
		{name: "docker needs dest", spec: "type=docker,tar=true", want: []string{"type=docker", "dest="}},
		{name: "local needs dest", spec: "type=local", want: []string{"type=local", "dest="}},
		{name: "tar type not yet", spec: "type=tar,dest=x.tar", want: []string{"type=tar"}},
		{name: "tar type needs dest", spec: "type=tar", want: []string{"type=tar", "dest="}},
		{name: "annotation type", spec: "type=image,annotation-bogus.org.example=x", want: []string{"annotation-bogus.org.example", "unknown annotation type"}},
		{name: "annotation on local", spec: "type=local,dest=x,annotation.a=b", want: []string{"annotation.a", "type=local"}},
		{name: "annotation platform", spec: "type=image,annotation-manifest[linux].a=b", want: []string{"OS/ARCH"}},
		{name: "not key=value", spec: "type=image,oops", want: []string{`"oops"`, "KEY=VALUE"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, push := range []bool{false, true} {
				outs, err := ParseOutputs([]string{"type=image", c.spec}, push)
				if err == nil {
					t.Fatalf("ParseOutputs(%q, %v) = %+v, want an error", c.spec, push, outs)
				}
				if outs != nil {
					t.Errorf("ParseOutputs(%q) returned outputs %+v with its error", c.spec, outs)
				}
				msg := err.Error()
				if strings.Contains(msg, "\n") {
					t.Errorf("error spans lines: %q", msg)
				}
				if !strings.Contains(msg, c.spec) {
					t.Errorf("error %q does not quote the -o value %q", msg, c.spec)
				}
				for _, w := range c.want {
					if !strings.Contains(msg, w) {
						t.Errorf("ParseOutputs(%q) error %q lacks %q", c.spec, msg, w)
					}
				}
			}
		})
	}
}

// With several unknown attributes, the error is the same every run (not Go's map order).
func TestParseOutputsErrorIsDeterministic(t *testing.T) {
	spec := "type=image,zzz=1,aaa=2,mmm=3,bbb=4"
	first := ""
	for i := 0; i < 50; i++ {
		_, err := ParseOutputs([]string{spec}, false)
		if err == nil {
			t.Fatal("unknown attributes accepted")
		}
		if i == 0 {
			first = err.Error()
			continue
		}
		if err.Error() != first {
			t.Fatalf("error changes between identical calls:\n%q\n%q", first, err)
		}
	}
}
