package remotecache

import (
	"encoding/json"
	"reflect"
	"testing"
)

// A cache config comes from a registry anyone may have written to: parsing never panics, and what
// it accepts survives a round trip unchanged (a record is kept or dropped, never altered).
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"version":1,"records":[{"key":"` + repeat("a", 64) + `","step":"s","created":"2026-01-01T00:00:00Z","elapsed":1}]}`))
	f.Add([]byte(`{"version":1,"records":[{"key":"` + repeat("b", 64) + `","layer":{"digest":"sha256:` + repeat("0", 64) + `","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":3,"diffID":"sha256:` + repeat("1", 64) + `"}}],"mounts":[{"id":"npm","blobs":[{"digest":"sha256:` + repeat("2", 64) + `","size":5}]}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"records":null,"selections":[{"key":"x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal an accepted config: %v", err)
		}
		c2, err := parseConfig(again)
		if err != nil {
			t.Fatalf("an accepted config does not parse again: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(normalize(c), normalize(c2)) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}

// normalize makes nil and empty slices compare equal.
func normalize(c *Config) string {
	b, _ := json.Marshal(c)
	var v any
	json.Unmarshal(b, &v)
	b, _ = json.Marshal(v)
	return string(b)
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

// --cache-from / --cache-to values come from users and CI files: parsing never panics, and a spec
// it accepts is complete (a type it knows, where to read or write, a mode, no negative cap).
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"type=registry,ref=reg.example/app:cache,mode=max",
		"reg.example/app:cache",
		"type=local,dest=/tmp/c,mode=min",
		"type=local,src=/tmp/c",
		"type=inline",
		`"type=registry,ref=r/a:b",ignore-error=true,compression=zstd`,
		"type=registry,ref=r/a,mounts=true,mounts-max-size=10MB",
		"type=registry,ref=r/a,ref=r/b",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, export bool) {
		sp, err := ParseSpec(s, export)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		switch {
		case sp.Type == "registry" && sp.Ref == "",
			sp.Type == "local" && sp.Dir == "",
			sp.Type != "registry" && sp.Type != "local" && sp.Type != "inline",
			export && sp.Mode != "min" && sp.Mode != "max",
			sp.MountsMaxSize < 0:
			t.Fatalf("accepted an incomplete spec from %q: %+v", s, sp)
		}
	})
}
