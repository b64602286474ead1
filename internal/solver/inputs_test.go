package solver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/contenthash"
	"github.com/strata-build/strata/internal/graph"
)

// A --parents COPY selects different files for the same patterns ("**" spans directories), so
// its selection memo must not answer a plain COPY, while every other memo keeps its name.
func TestMemoKeyParents(t *testing.T) {
	f := fsState{chain: "sha256:0123"}
	srcs := []string{"x/**/*.txt"}
	plain := &graph.Step{Kind: graph.KindCopy, Copy: &graph.CopyOp{Srcs: srcs}}
	parents := &graph.Step{Kind: graph.KindCopy, Copy: &graph.CopyOp{Srcs: srcs, Parents: true}}
	run := &graph.Step{Kind: graph.KindRun, Run: &graph.RunOp{}}
	if memoKey(plain, f, srcs, nil) == memoKey(parents, f, srcs, nil) {
		t.Error("--parents and plain COPY share a selection memo")
	}
	if memoKey(plain, f, srcs, nil) != memoKey(run, f, srcs, nil) {
		t.Error("a plain COPY and a bind mount of the same paths no longer share a memo")
	}
	// Memos written before --parents was part of the name still answer plain selections.
	doc := map[string]any{"v": memoVersion, "key": keyVersion, "fs": f.chain, "srcs": srcs, "excludes": []string{}, "chmod": false, "chown": false}
	data, _ := json.Marshal(doc)
	h := sha256.Sum256(data)
	if got, want := memoKey(plain, f, srcs, nil), hex.EncodeToString(h[:]); got != want {
		t.Errorf("plain memo key %s, want %s as before", got, want)
	}
}

func TestSelectRules(t *testing.T) {
	run := selectRules(&graph.Step{Kind: graph.KindRun, Run: &graph.RunOp{}}, &contenthash.Source{})
	if run.EmptyWildcards || run.Parents {
		t.Errorf("RUN mount sources got COPY rules: %+v", run)
	}
	cp := selectRules(&graph.Step{Kind: graph.KindCopy, Copy: &graph.CopyOp{Parents: true}}, &contenthash.Source{})
	if !cp.EmptyWildcards || !cp.Parents {
		t.Errorf("COPY --parents rules: %+v", cp)
	}
}

func TestParentsCopiesRoot(t *testing.T) {
	for srcs, want := range map[string]bool{
		"nomatch*":          true,  // pivot is the root
		"/test/a/b2*/c":     true,  // no pivot: the root
		"/test/a/./b2*":     true,  // literal pivot
		"/test/a*/./c/**/e": false, // every pivot a wildcard
	} {
		if got := parentsCopiesRoot([]string{srcs}); got != want {
			t.Errorf("%s: %t, want %t", srcs, got, want)
		}
	}
	if !parentsCopiesRoot([]string{"/a*/./x", "/b/./y*"}) {
		t.Error("one literal pivot among several")
	}
}

func TestCacheSeed(t *testing.T) {
	u := 1000
	for _, c := range []struct {
		m     graph.Mount
		path  string
		seeds bool
	}{
		{graph.Mount{Source: "/seed"}, "/seed", true},
		{graph.Mount{Source: "seed/"}, "/seed", true},
		{graph.Mount{}, ".", true},
		{graph.Mount{Source: "/"}, ".", true},
		{graph.Mount{UID: &u}, ".", false}, // BuildKit mounts a new /cache made with that owner
		{graph.Mount{Source: "/seed", UID: &u}, "/seed", true},
	} {
		if got := cacheSeedPath(&c.m); got != c.path {
			t.Errorf("%+v: path %q, want %q", c.m, got, c.path)
		}
		if got := seedsCache(&c.m); got != c.seeds {
			t.Errorf("%+v: seeds %t, want %t", c.m, got, c.seeds)
		}
	}
}

// Every sandbox option changes what a RUN can observe, so each must change the key (BuildKit
// keys them through the ExecOp's meta), and the default sandbox keeps the key it always had.
func TestRunKeySandbox(t *testing.T) {
	key := func(sb graph.Sandbox) string {
		r := &graph.RunOp{Args: []string{"/bin/sh", "-c", "cat /etc/hosts"}, Sandbox: sb}
		in := &inputs{def: runDef(r, "default", nil)}
		return in.key(&graph.Step{Kind: graph.KindRun, Run: r}, "sha256:00", "gzip")
	}
	hosts := []graph.Host{{Name: "db", IP: "10.0.0.1"}}
	nofile := []graph.Ulimit{{Name: "nofile", Soft: 100, Hard: 200}}
	variants := map[string]graph.Sandbox{
		"default":         {},
		"add-host":        {ExtraHosts: hosts},
		"add-host other":  {ExtraHosts: []graph.Host{{Name: "db", IP: "10.0.0.2"}}},
		"ulimit":          {Ulimits: nofile},
		"ulimit hard":     {Ulimits: []graph.Ulimit{{Name: "nofile", Soft: 100, Hard: 300}}},
		"shm-size":        {ShmSize: 1 << 27},
		"shm-size other":  {ShmSize: 1 << 28},
		"hostname":        {Hostname: "builder"},
		"hosts+hostname":  {ExtraHosts: hosts, Hostname: "builder"},
		"ulimit+shm-size": {Ulimits: nofile, ShmSize: 1 << 27},
	}
	seen := map[string]string{}
	for name, sb := range variants {
		k := key(sb)
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s share a key", name, other)
		}
		seen[k] = name
		if key(sb) != k {
			t.Errorf("%s: key not stable", name)
		}
	}
	// Keys of existing records stay valid: the default sandbox adds nothing to the definition.
	if _, ok := runDef(&graph.RunOp{}, "default", nil)["sandbox"]; ok {
		t.Error("the default sandbox changed the RUN definition")
	}
}

// The copier's change of what a COPY/ADD onto the parent writes (copyVersion) reaches exactly
// those steps: a --link copy, which cannot see the parent, keeps its field set, as RUN does.
func TestCopyVersion(t *testing.T) {
	for _, tc := range []struct {
		step *graph.Step
		want bool
	}{
		{&graph.Step{Kind: graph.KindCopy, Copy: &graph.CopyOp{Srcs: []string{"f"}, Dest: "/link"}}, true},
		{&graph.Step{Kind: graph.KindAdd, Copy: &graph.CopyOp{Srcs: []string{"f"}, Dest: "/d/"}}, true},
		{&graph.Step{Kind: graph.KindCopy, Copy: &graph.CopyOp{Srcs: []string{"f"}, Dest: "/d/", Link: true}}, false},
	} {
		v, ok := copySemantics(tc.step)["copyVersion"]
		if ok != tc.want || (ok && v != copyVersion) {
			t.Errorf("%+v: copyVersion %v, %v", tc.step.Copy, v, ok)
		}
	}
}

// A big heredoc body is in the key as its digest (no copy of the body is encoded), two bodies
// that differ in one byte still get different keys, and small bodies keep the encoding existing
// keys were made with.
func TestKeyFilesHashesBigBodies(t *testing.T) {
	small := []graph.InlineFile{{Name: "EOF", Data: "echo hi\n"}}
	if got, _ := json.Marshal(keyFiles(small)); string(got) != `[{"Name":"EOF","Data":"echo hi\n","Chomp":false,"Expand":false,"Mode":0}]` {
		t.Errorf("small body encoded as %s", got)
	}
	body := strings.Repeat("x", bigInline)
	a, _ := json.Marshal(keyFiles([]graph.InlineFile{{Name: "EOF", Data: body + "a"}}))
	b, _ := json.Marshal(keyFiles([]graph.InlineFile{{Name: "EOF", Data: body + "b"}}))
	if len(a) > 300 || bytes.Equal(a, b) {
		t.Errorf("big bodies encoded as %d bytes, equal=%v: %.200s", len(a), bytes.Equal(a, b), a)
	}
	// The digest is the body's sha256, whole (hashed in chunks; keys made before stay valid).
	if sum := sha256.Sum256([]byte(body + "a")); !bytes.Contains(a, []byte(`"DataSHA256":"`+hex.EncodeToString(sum[:])+`"`)) {
		t.Errorf("big body's digest is not its sha256: %.300s", a)
	}
}
