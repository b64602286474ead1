package userns

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Ranges follow one another from id 1, whether the file names the user or its uid; other users'
// lines are skipped; no line is an error that names the file and the fix.
func TestRanges(t *testing.T) {
	f := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(f, []byte("other:100000:65536\nci:165536:65536\n1001:300000:1000\n"), 0o644)
	got, err := ranges(f, "ci", 1001)
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{{1, 165536, 65536}, {65537, 300000, 1000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ranges = %v, want %v", got, want)
	}
	if _, err := ranges(f, "nobody-here", 4242); err == nil || !strings.Contains(err.Error(), f+" has no range for user nobody-here") {
		t.Errorf("missing user: %v", err)
	}
	os.WriteFile(f, []byte("ci:x:1\n"), 0o644)
	if _, err := ranges(f, "ci", 1001); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed line: %v", err)
	}
}

func TestAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{
		"5.10.0-28-amd64": false, "5.11.0": true, "6.1.0-18-amd64": true, "4.19.0": false, "6.18.44-fc-v1098": true, "weird": true,
	} {
		if got := atLeast(rel, 5, 11); got != want {
			t.Errorf("atLeast(%q, 5, 11) = %v, want %v", rel, got, want)
		}
	}
}
