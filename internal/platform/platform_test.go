package platform

import (
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	ps, err := ParseList("linux/amd64, linux/arm64,linux/arm,linux/aarch64,linux/arm/v6,riscv64")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, Format(p))
	}
	want := "linux/amd64 linux/arm64 linux/arm/v7 linux/arm/v6 linux/riscv64"
	if s := strings.Join(got, " "); s != want {
		t.Fatalf("got %s, want %s", s, want)
	}
	if ps, err := ParseList("local,linux/arm64"); err != nil || !Equal(ps[0], Host()) || len(ps) != 2 {
		t.Errorf("local: %v %v", ps, err)
	}
	for _, bad := range []string{"linux/", "a/b/c/d", "/arm64"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
