package executor

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/strata-build/strata/internal/users"
)

// BuildKit (oci.WithUIDGID) always lists the primary group first among the supplementary ones,
// so `id` shows groups=GID even for USER uid:gid.
func TestAdditionalGidsStartWithPrimary(t *testing.T) {
	for _, c := range []struct {
		ident users.Identity
		want  []uint32
	}{
		{users.Identity{UID: 1234, GID: 5678}, []uint32{5678}},
		{users.Identity{UID: 1000, GID: 1000, Groups: []uint32{1500, 1600}}, []uint32{1000, 1500, 1600}},
		{users.Identity{UID: 1000, GID: 1500, Groups: []uint32{1500, 1600}}, []uint32{1500, 1600}},
	} {
		if got := additionalGids(c.ident); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%+v: got %v, want %v", c.ident, got, c.want)
		}
	}
}

// /etc/hosts is BuildKit's fixed file, never the host's, so RUN results do not depend on the machine.
func TestHostsFileIsBuildKits(t *testing.T) {
	p, err := writeHosts(t.TempDir(), DefaultHostname, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || filepath.Base(p) != "hosts" {
		t.Fatal(p, err)
	}
	if want := "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"; string(b) != want {
		t.Fatalf("hosts %q, want %q", b, want)
	}
}
