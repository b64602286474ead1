package fileindex

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"testing"
)

func sample(n int) Index {
	idx := Index{}
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("app/src/pkg%02d/mod%d/f%03d.bin", i/100, i/10%10, i)
		idx[p] = sha256.Sum256([]byte(p))
	}
	idx["a"] = sha256.Sum256([]byte("a"))
	idx["a b/ü"] = sha256.Sum256(nil)
	return idx
}

func TestRoundTrip(t *testing.T) {
	for _, idx := range []Index{{}, sample(1), sample(2000)} {
		data, err := Encode(idx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, idx) {
			t.Fatalf("decoded %d entries, want %d equal ones", len(got), len(idx))
		}
		again, _ := Encode(got)
		if string(again) != string(data) {
			t.Fatal("encoding is not canonical")
		}
	}
	// Front coding keeps an index of deep paths small: well under path + digest per entry.
	data, _ := Encode(sample(20000))
	if len(data) > 20000*(32+16) {
		t.Errorf("20,000 entries take %d bytes", len(data))
	}
}

// Every single-byte change, and every cut, is an error, never a different index.
func TestDamageIsAnError(t *testing.T) {
	data, err := Encode(sample(20))
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		bad := append([]byte(nil), data...)
		bad[i] ^= 0x40
		if _, err := Decode(bad); err == nil {
			t.Fatalf("byte %d flipped: decoded", i)
		}
	}
	for n := 0; n < len(data); n++ {
		if _, err := Decode(data[:n]); err == nil {
			t.Fatalf("cut at %d: decoded", n)
		}
	}
}

func TestBadPathsRefused(t *testing.T) {
	for _, p := range []string{"", ".", "..", "../x", "/etc/passwd", "a//b", "a/./b", "a/", "x\x00y"} {
		if _, err := Encode(Index{p: {}}); err == nil {
			t.Errorf("%q encoded", p)
		}
	}
	big := Index{}
	for i := 0; i <= MaxEntries; i++ {
		big[fmt.Sprint(i)] = [32]byte{}
	}
	if _, err := Encode(big); err == nil {
		t.Error("an index over MaxEntries encoded")
	}
}
