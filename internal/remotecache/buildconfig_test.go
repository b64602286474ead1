package remotecache

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/store"
)

// The same step in several stages (WORKDIR /w at the top of each) must give the same config bytes
// whichever stage ran it first: stages run in parallel, and a changed config is a needless upload.
func TestBuildConfigSameStepInSeveralStages(t *testing.T) {
	key := strings.Repeat("a", 64)
	other := strings.Repeat("b", 64)
	in := func(pos string) Entry {
		return Entry{Record: store.Record{Key: key, Empty: true}, Position: pos, Inputs: map[string]string{"step": "WORKDIR /w"}}
	}
	tail := Entry{Record: store.Record{Key: other, Empty: true}, Position: "Dockerfile||app|3"}
	orders := [][]Entry{
		{in("Dockerfile||deps|2"), in("Dockerfile||app|2"), tail, in("Dockerfile||assets|2")},
		{in("Dockerfile||assets|2"), tail, in("Dockerfile||deps|2"), in("Dockerfile||app|2")},
		{tail, in("Dockerfile||app|2"), in("Dockerfile||assets|2"), in("Dockerfile||deps|2")},
	}
	var first string
	for i, es := range orders {
		c := BuildConfig(es, nil)
		if len(c.Records) != 2 {
			t.Fatalf("order %d: %d records, want 2", i, len(c.Records))
		}
		if c.Records[0].Position != "Dockerfile||app|2" {
			t.Errorf("order %d: kept position %q, want the smallest", i, c.Records[0].Position)
		}
		data, _ := json.Marshal(c)
		if i == 0 {
			first = string(data)
		} else if string(data) != first {
			t.Errorf("order %d gave different config bytes:\n%s\n%s", i, data, first)
		}
	}
}
