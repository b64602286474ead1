package executor

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/strata-build/strata/internal/users"
)

func identityRoot() users.Identity { return users.Identity{Home: "/root"} }

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
