package store

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The compact inode list of the snapshot size cache reads back as written (sorted by inode).
func TestInodeListRoundTrip(t *testing.T) {
	in := snapSize{Unique: 7, Dev: 2049, Shared: inodeList{{1 << 40, 0}, {5, 1 << 33}, {6, 12}, {1, 3}}}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out snapSize
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	want := inodeList{{1, 3}, {5, 1 << 33}, {6, 12}, {1 << 40, 0}}
	if out.Unique != 7 || out.Dev != 2049 || !reflect.DeepEqual(out.Shared, want) {
		t.Errorf("read back %+v from %s, want shared %v", out, data, want)
	}
	if err := json.Unmarshal([]byte(`{"u":1,"s":"/w=="}`), &out); err == nil {
		t.Error("a truncated list decoded")
	}
}
