package main

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRunNetworkModes: RUN steps reach a server on the host's loopback with the default (host)
// network, and cannot with --network=none, set on the CLI or on the RUN instruction.
func TestRunNetworkModes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A plain TCP server (busybox-static's wget crashes in this environment, nc does not).
	var hits atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			fmt.Fprint(c, "net-ok")
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	fetch := func(dst string) string { return "nc -w 3 " + host + " " + port + " </dev/null > " + dst }

	probe := "if " + fetch("/got") + " && test -s /got; then echo reached; else echo blocked; fi > /result; ls /sys/class/net > /ifaces"
	e := newEnv(t)
	ctx := e.project("net", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN " + probe + "\n"})

	o, r0 := e.buildOCI("net-default", ctx)
	rootfs := o.unpack(t)
	if got := fileAt(t, rootfs, "result"); got != "reached\n" {
		t.Fatalf("default network: %q, want reached\n%s", got, r0.out)
	}
	if got := fileAt(t, rootfs, "got"); got != "net-ok" {
		t.Errorf("default network fetched %q", got)
	}
	if hits.Load() != 1 {
		t.Errorf("server saw %d requests, want 1", hits.Load())
	}

	// Same Dockerfile, same store, --network=none: the step must re-run (the mode is in the key)
	// and fail to connect.
	before := hits.Load()
	o, r := e.buildOCI("net-none-cli", "--network=none", ctx)
	for name, st := range stepStates(r.out) {
		if strings.Contains(name, "RUN ") && st == "CACHED" {
			t.Errorf("--network=none reused the default-network result for %s", name)
		}
	}
	rootfs = o.unpack(t)
	if got := fileAt(t, rootfs, "result"); got != "blocked\n" {
		t.Errorf("--network=none: %q, want blocked", got)
	}
	if got := fileAt(t, rootfs, "ifaces"); got != "lo\n" {
		t.Errorf("--network=none interfaces %q, want only lo", got)
	}
	if hits.Load() != before {
		t.Errorf("server was reached %d times under --network=none", hits.Load()-before)
	}

	// RUN --network=none in the Dockerfile, default CLI.
	ctx2 := e.project("net2", map[string]string{"Dockerfile": "FROM {{BASE}}\nRUN --network=none " + probe + "\n" +
		"RUN --network=default " + fetch("/got2") + "\n"})
	before = hits.Load()
	o = func() *ociResult { o, _ := e.buildOCI("net-none-run", ctx2); return o }()
	rootfs = o.unpack(t)
	if got := fileAt(t, rootfs, "result"); got != "blocked\n" {
		t.Errorf("RUN --network=none: %q, want blocked", got)
	}
	if got := fileAt(t, rootfs, "got2"); got != "net-ok" {
		t.Errorf("RUN --network=default after a none step fetched %q", got)
	}
	if n := hits.Load() - before; n != 1 {
		t.Errorf("server saw %d requests from the RUN --network=none build, want 1 (the default step)", n)
	}
}
