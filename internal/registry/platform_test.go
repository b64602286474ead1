package registry

import (
	"context"
	"errors"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A single manifest (no index) is for the platform its config names: pulling it for another
// platform fails before any layer is fetched, as containerd's platform check does.
func TestPullSingleManifestOtherPlatform(t *testing.T) {
	requireRegistry(t)
	arm := New(Options{Platform: ocispec.Platform{OS: "linux", Architecture: "arm64"}})
	bs := newStore(t)
	_, err := arm.Pull(context.Background(), busyboxRef, bs, nil)
	if !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "linux/arm64") ||
		!strings.Contains(err.Error(), "the image is linux/amd64") {
		t.Fatalf("arm64 pull of an amd64 manifest: %v", err)
	}
	img, err := New(amd64()).Pull(context.Background(), busyboxRef, bs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range img.Layers {
		if !bs.Has(l.Digest) {
			t.Errorf("layer %s missing after the amd64 pull", l.Digest)
		}
	}
}
