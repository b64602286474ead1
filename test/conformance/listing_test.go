package conformance

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// entry is one filesystem object as the suite compares it: everything a user can observe in the
// image except times (BuildKit and strata stamp different clocks; the reproducibility tests own
// times).
type entry struct {
	line  string // "TYPE MODE UID:GID [DETAIL]"
	nlink uint64
	ino   uint64
}

// scan lists every path under root ("/" for root itself) with its entry.
func scan(root string) (map[string]entry, error) {
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := "/" + filepath.ToSlash(rel)
		if rel == "." {
			name = "/"
		}
		e, err := describe(p)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		out[name] = e
		return nil
	})
	return out, err
}

func describe(p string) (entry, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return entry{}, err
	}
	mode := st.Mode & 0o7777
	owner := fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	var typ, detail string
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		typ = "dir"
	case syscall.S_IFREG:
		typ = "file"
		b, err := os.ReadFile(p)
		if err != nil {
			return entry{}, err
		}
		detail = content(b)
	case syscall.S_IFLNK:
		typ = "link"
		t, err := os.Readlink(p)
		if err != nil {
			return entry{}, err
		}
		detail = "-> " + t
	case syscall.S_IFIFO:
		typ = "fifo"
	case syscall.S_IFCHR, syscall.S_IFBLK:
		typ = "char"
		if st.Mode&syscall.S_IFMT == syscall.S_IFBLK {
			typ = "block"
		}
		detail = fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	case syscall.S_IFSOCK:
		typ = "socket"
	default:
		typ = "unknown"
	}
	if caps, ok := xattr(p, "security.capability"); ok {
		detail = strings.TrimSpace(detail + " caps=" + hex.EncodeToString(caps))
	}
	line := fmt.Sprintf("%s %04o %s", typ, mode, owner)
	if detail != "" {
		line += " " + detail
	}
	return entry{line: line, nlink: uint64(st.Nlink), ino: st.Ino}, nil
}

// content shows short text as a quoted string and anything else as size and digest prefix.
func content(b []byte) string {
	if len(b) <= 160 && utf8.Valid(b) && !strings.ContainsAny(string(b), "\x00") {
		return fmt.Sprintf("%q", b)
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%dB sha256:%s", len(b), hex.EncodeToString(sum[:])[:16])
}

func xattr(p, name string) ([]byte, bool) {
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(p, name, buf)
	if err != nil || n <= 0 {
		return nil, false
	}
	return buf[:n], true
}

// changes lists, sorted by path, what the build added to or changed in the base: new paths,
// paths whose entry differs, and base paths that are gone. Hard links among the listed files are
// shown as "hardlink=FIRST" so link preservation is compared too.
func changes(base, got map[string]entry) string {
	var paths []string
	for p, e := range got {
		if b, ok := base[p]; !ok || b.line != e.line {
			paths = append(paths, p)
		}
	}
	for p := range base {
		if _, ok := got[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	firstByIno := map[uint64]string{}
	var b strings.Builder
	for _, p := range paths {
		e, ok := got[p]
		if !ok {
			fmt.Fprintf(&b, "%s deleted\n", p)
			continue
		}
		line := e.line
		if e.nlink > 1 && strings.HasPrefix(line, "file ") {
			if first, seen := firstByIno[e.ino]; seen {
				line += " hardlink=" + first
			} else {
				firstByIno[e.ino] = p
			}
		}
		fmt.Fprintf(&b, "%s %s\n", p, line)
	}
	return b.String()
}

// imageConfig is the part of an OCI image config the suite compares.
type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant"`
	Config       struct {
		User         string              `json:"User"`
		Env          []string            `json:"Env"`
		Entrypoint   []string            `json:"Entrypoint"`
		Cmd          []string            `json:"Cmd"`
		WorkingDir   string              `json:"WorkingDir"`
		Labels       map[string]string   `json:"Labels"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		Volumes      map[string]struct{} `json:"Volumes"`
		StopSignal   string              `json:"StopSignal"`
		Healthcheck  json.RawMessage     `json:"Healthcheck"`
		Shell        []string            `json:"Shell"`
		OnBuild      []string            `json:"OnBuild"`
	} `json:"config"`
	History []struct {
		EmptyLayer bool `json:"empty_layer"`
	} `json:"history"`
	Author string `json:"author"` // MAINTAINER, or the base image's
}

// configSummary renders the compared config fields one per line, in a fixed order, skipping empty
// ones.
func configSummary(raw []byte, layers int) (string, error) {
	var c imageConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", fmt.Errorf("image config: %w", err)
	}
	var b strings.Builder
	plat := c.OS + "/" + c.Architecture
	if c.Variant != "" {
		plat += "/" + c.Variant
	}
	fmt.Fprintf(&b, "platform: %s\n", plat)
	fmt.Fprintf(&b, "layers: %d\n", layers)
	js := func(v any) string { j, _ := json.Marshal(v); return string(j) }
	cc := c.Config
	if cc.User != "" {
		fmt.Fprintf(&b, "user: %s\n", cc.User)
	}
	for _, e := range cc.Env {
		fmt.Fprintf(&b, "env: %s\n", e)
	}
	if cc.Entrypoint != nil {
		fmt.Fprintf(&b, "entrypoint: %s\n", js(cc.Entrypoint))
	}
	if cc.Cmd != nil {
		fmt.Fprintf(&b, "cmd: %s\n", js(cc.Cmd))
	}
	if cc.WorkingDir != "" {
		fmt.Fprintf(&b, "workdir: %s\n", cc.WorkingDir)
	}
	for _, k := range sortedKeys(cc.Labels) {
		fmt.Fprintf(&b, "label: %s=%s\n", k, cc.Labels[k])
	}
	for _, k := range sortedKeys(cc.ExposedPorts) {
		fmt.Fprintf(&b, "expose: %s\n", k)
	}
	for _, k := range sortedKeys(cc.Volumes) {
		fmt.Fprintf(&b, "volume: %s\n", k)
	}
	if cc.StopSignal != "" {
		fmt.Fprintf(&b, "stopsignal: %s\n", cc.StopSignal)
	}
	if len(cc.Healthcheck) > 0 && string(cc.Healthcheck) != "null" {
		var h any
		_ = json.Unmarshal(cc.Healthcheck, &h)
		fmt.Fprintf(&b, "healthcheck: %s\n", js(h))
	}
	if cc.Shell != nil {
		fmt.Fprintf(&b, "shell: %s\n", js(cc.Shell))
	}
	for _, o := range cc.OnBuild {
		fmt.Fprintf(&b, "onbuild: %s\n", o)
	}
	if c.Author != "" {
		fmt.Fprintf(&b, "author: %s\n", c.Author)
	}
	nonEmpty := 0
	for _, h := range c.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	fmt.Fprintf(&b, "history: %d entries, %d with layers\n", len(c.History), nonEmpty)
	return b.String(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ociLayout is an image read back from an OCI layout directory.
type ociLayout struct {
	dir string
}

func (l ociLayout) blob(d string) ([]byte, error) {
	alg, hexd, ok := strings.Cut(d, ":")
	if !ok {
		return nil, fmt.Errorf("bad digest %q", d)
	}
	f, err := os.Open(filepath.Join(l.dir, "blobs", alg, hexd))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant,omitempty"`
	} `json:"platform,omitempty"`
	Size int64 `json:"size"`
}

// single returns the one image manifest in the layout (descending through a nested index) with
// its config and layer count, and retags it as tag so umoci can name it.
func (l ociLayout) single(tag string) (cfg []byte, layers int, err error) {
	raw, err := os.ReadFile(filepath.Join(l.dir, "index.json"))
	if err != nil {
		return nil, 0, err
	}
	var idx struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType,omitempty"`
		Manifests     []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, 0, fmt.Errorf("index.json: %w", err)
	}
	if len(idx.Manifests) != 1 {
		return nil, 0, fmt.Errorf("index.json has %d manifests, want 1", len(idx.Manifests))
	}
	d := idx.Manifests[0]
	for strings.Contains(d.MediaType, "index") {
		b, err := l.blob(d.Digest)
		if err != nil {
			return nil, 0, err
		}
		var inner struct {
			Manifests []descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(b, &inner); err != nil {
			return nil, 0, err
		}
		if len(inner.Manifests) != 1 {
			return nil, 0, fmt.Errorf("nested index has %d manifests, want 1", len(inner.Manifests))
		}
		d = inner.Manifests[0]
	}
	mb, err := l.blob(d.Digest)
	if err != nil {
		return nil, 0, err
	}
	var m struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, 0, fmt.Errorf("manifest: %w", err)
	}
	cfg, err = l.blob(m.Config.Digest)
	if err != nil {
		return nil, 0, err
	}
	d.Annotations = map[string]string{"org.opencontainers.image.ref.name": tag}
	d.Platform = nil
	idx.Manifests = []descriptor{d}
	out, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(l.dir, "index.json"), out, 0o644); err != nil {
		return nil, 0, err
	}
	return cfg, len(m.Layers), nil
}
