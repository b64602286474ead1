package build

import "testing"

// --output values come from users and CI files: parsing never panics, and an accepted output has
// a type strata writes and, where it writes a file or directory, a destination.
func FuzzParseOutputs(f *testing.F) {
	for _, s := range []string{
		"type=image,name=reg/a:1,push=true,oci-mediatypes=true",
		"type=registry,name=reg/a:1,compression=zstd",
		"type=oci,dest=out.tar",
		"type=docker,dest=-",
		"type=local,dest=out",
		"out",
		"-",
		`"type=image,name=a,b",push=false`,
		"type=tar,dest=x",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, push bool) {
		outs, err := ParseOutputs([]string{s}, push)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		for _, o := range outs {
			switch o.Type {
			case "image", "registry":
			case "oci", "docker", "local", "tar":
				if o.Dest == "" {
					t.Fatalf("%q: output %+v has no destination", s, o)
				}
			default:
				t.Fatalf("%q: accepted output type %q", s, o.Type)
			}
		}
	})
}
