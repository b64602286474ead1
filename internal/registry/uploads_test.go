package registry

import (
	"context"
	"crypto/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/testenv"
)

func randomBlob(t *testing.T, bs *testenv.DirStore, n int) Blob {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	d := digest.FromBytes(b)
	if err := bs.Ingest(d, strings.NewReader(string(b))); err != nil {
		t.Fatal(err)
	}
	return Blob{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(n)}}
}

// A blob sent during the build (Preupload) is not sent or asked about again by the push that
// needs it; one that failed after its retries fails the push at once, with its cause.
func TestPreuploadSharedWithPush(t *testing.T) {
	p := faultProxy(t)
	bs := newStore(t)
	ctx := context.Background()
	manifest := []byte(`{"schemaVersion":2}`)

	c := New(fast())
	blob := randomBlob(t, bs, 64<<10)
	ref := p.Addr() + "/preupload/ok:1"
	c.Preupload(ctx, ref, blob, bs)
	c.Wait()
	up := p.Stats()
	if up.BlobUploads != 1 || up.BlobBytesUp < 64<<10 {
		t.Fatalf("Preupload: %+v, want one upload of the blob", up)
	}
	p.Reset()
	// The manifest PUT may be refused (it is not a real image manifest); the blob must not move.
	c.PushManifest(ctx, []string{ref}, ocispec.MediaTypeImageManifest, manifest, []Blob{blob}, bs, nil)
	if s := p.Stats(); s.BlobHeads != 0 || s.BlobUploads != 0 {
		t.Fatalf("push after Preupload: %+v, want no blob request", s)
	}

	// Uploads to this repository fail every time: the background upload gives up after its
	// tries; the push reports that, without three more.
	c = New(fast())
	failing := randomBlob(t, bs, 1024)
	bad := p.Addr() + "/preupload/bad:1"
	p.Inject(testenv.Fault{Method: "POST", Path: regexp.MustCompile(`^/v2/preupload/bad/blobs/uploads/`), Status: 500})
	c.Preupload(ctx, bad, failing, bs)
	c.Wait()
	tries := p.Stats().Requests
	err := c.PushManifest(ctx, []string{bad}, ocispec.MediaTypeImageManifest, manifest, []Blob{failing}, bs, nil)
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), failing.Digest.String()) {
		t.Fatalf("push of a blob whose upload failed: %v", err)
	}
	if again := p.Stats().Requests; again != tries {
		t.Fatalf("the push made %d more requests for a blob that had already failed", again-tries)
	}

	// A background upload cancelled with its build is forgotten: a later push sends the blob.
	p.ClearFaults()
	p.Reset()
	c = New(fast())
	other := randomBlob(t, bs, 2048)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	c.Preupload(cctx, p.Addr()+"/preupload/cancel:1", other, bs)
	c.Wait()
	c.PushManifest(ctx, []string{p.Addr() + "/preupload/cancel:1"}, ocispec.MediaTypeImageManifest, manifest, []Blob{other}, bs, nil)
	if s := p.Stats(); s.BlobUploads != 1 {
		t.Fatalf("push after a cancelled Preupload: %+v, want the blob uploaded", s)
	}
}
