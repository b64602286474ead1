package solver

import (
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/graph"
)

func at(sec int64) *time.Time {
	t := time.Unix(sec, 0).UTC()
	return &t
}

// With SOURCE_DATE_EPOCH, the entries a build adds are dated the epoch (earlier or later than
// when they ran); the base image's entries keep their dates, as in BuildKit.
func TestPinHistory(t *testing.T) {
	epoch := time.Unix(1700000000, 0).UTC()
	base := []ocispec.History{
		{Created: at(1500000000), CreatedBy: "ADD rootfs.tar /"},
		{Created: at(1800000000), CreatedBy: "CMD [\"sh\"]", EmptyLayer: true},
	}
	history := append(append([]ocispec.History(nil), base...),
		ocispec.History{Created: at(1900000000), CreatedBy: "COPY . .", Comment: "buildkit.dockerfile.v0"},
		ocispec.History{Created: at(1600000000), CreatedBy: "ENV A=1", Comment: "buildkit.dockerfile.v0", EmptyLayer: true},
		ocispec.History{CreatedBy: "RUN true", Comment: "buildkit.dockerfile.v0"},
	)
	got, added := pinHistory(history, base, epoch)
	if !added {
		t.Error("added = false with three new entries")
	}
	for i, h := range got {
		want := epoch
		if i < len(base) {
			want = *base[i].Created
		}
		if h.Created == nil || !h.Created.Equal(want) {
			t.Errorf("entry %d (%s): created %v, want %v", i, h.CreatedBy, h.Created, want)
		}
		if h.CreatedBy != history[i].CreatedBy || h.EmptyLayer != history[i].EmptyLayer {
			t.Errorf("entry %d changed beyond its date: %+v", i, h)
		}
	}
	if !history[2].Created.Equal(*at(1900000000)) {
		t.Error("pinHistory changed its input")
	}

	// Once the history departs from the base's, an entry equal to a later base entry is the build's.
	h2 := []ocispec.History{base[0], {Created: at(1900000000), CreatedBy: "RUN x"}, base[1]}
	got, _ = pinHistory(h2, base, epoch)
	if !got[0].Created.Equal(*base[0].Created) || !got[1].Created.Equal(epoch) || !got[2].Created.Equal(epoch) {
		t.Errorf("diverged history: %+v", got)
	}

	// Only the base: nothing added, nothing changed.
	got, added = pinHistory(base, base, epoch)
	if added || !got[1].Created.Equal(*base[1].Created) {
		t.Errorf("base only: added %v, %+v", added, got)
	}
}

// The base history is that of the image at the bottom of the FROM chain.
func TestBaseHistory(t *testing.T) {
	root := &graph.Stage{Base: graph.Base{Image: "busybox"}}
	root.Base.Config.History = []ocispec.History{{CreatedBy: "base"}}
	mid := &graph.Stage{Base: graph.Base{Stage: root}}
	tgt := &graph.Stage{Base: graph.Base{Stage: mid}}
	if h := baseHistory(tgt); len(h) != 1 || h[0].CreatedBy != "base" {
		t.Errorf("baseHistory = %+v", h)
	}
	if h := baseHistory(&graph.Stage{Base: graph.Base{Scratch: true}}); h != nil {
		t.Errorf("scratch: %+v", h)
	}
	ctxStage := &graph.Stage{Base: graph.Base{Image: "busybox", Context: "ctx"}}
	ctxStage.Base.Config.History = root.Base.Config.History
	if h := baseHistory(ctxStage); h != nil {
		t.Errorf("named context: %+v", h)
	}
}
