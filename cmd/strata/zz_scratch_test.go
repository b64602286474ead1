package main

import (
	"os"
	"testing"
	"time"
)

func TestZZScratchRegistry(t *testing.T) {
	if os.Getenv("ZZ_SCRATCH") == "" {
		t.Skip()
	}
	os.WriteFile("/tmp/zz_baseref", []byte(baseRef), 0o644)
	time.Sleep(3000 * time.Second)
}
