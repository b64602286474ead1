package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/image"
)

// HostBusybox is the static busybox the fixtures copy; Debian's busybox-static installs it here.
const HostBusybox = "/bin/busybox"

// BusyboxPath is the PATH the fixture image sets, the same as Docker's official images.
const BusyboxPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BusyboxRootfs fills dir with a minimal runnable root filesystem: the host's static busybox, a
// symlink per applet, users root, nobody and app (1000:1000), /tmp (1777) and /root.
func BusyboxRootfs(dir string) error {
	return busyboxRootfs(dir, HostBusybox)
}

// busyboxRootfs is BusyboxRootfs with binary as /bin/busybox. The applet list always comes from
// the host's busybox, which can run here: Debian builds every architecture's busybox-static from
// the same source and configuration.
func busyboxRootfs(dir, binary string) error {
	// --list-full places applets where a distribution would (sbin/, usr/bin/), so PATH lookups in
	// tests behave like on a real image.
	out, err := exec.Command(HostBusybox, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("list busybox applets (is busybox-static installed?): %w", err)
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "dev", "proc", "sys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("busybox rootfs: %w", err)
		}
	}
	if err := copyFile(binary, filepath.Join(dir, "bin", "busybox"), 0o755); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "bin/busybox" || strings.Contains(applet, "..") {
			continue
		}
		link := filepath.Join(dir, applet)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			return fmt.Errorf("busybox rootfs: %w", err)
		}
		if err := os.Symlink("/bin/busybox", link); err != nil && !os.IsExist(err) {
			return fmt.Errorf("busybox rootfs: applet %s: %w", applet, err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" +
			"app:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group": "root:x:0:\nnobody:x:65534:\napp:x:1000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("busybox rootfs: %w", err)
		}
	}
	// Chmod after mkdir because the umask would otherwise strip the sticky and world bits.
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|fs.ModeSticky); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	if err := os.Chmod(filepath.Join(dir, "root"), 0o700); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	return nil
}

// BuildBusyboxImage writes a linux/amd64 busybox image (one gzip layer) as an OCI layout in layoutDir,
// tagged "latest", and returns it. The layer and config are byte-for-byte reproducible for a given
// host busybox, so the image digest is stable across runs and machines with the same package.
func BuildBusyboxImage(layoutDir string) (*image.Image, error) {
	img, err := buildBusyboxBlobs(layoutDir, HostBusybox, ocispec.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		return nil, err
	}
	return img, writeLayoutIndex(layoutDir, []ocispec.Descriptor{img.Manifest}, []ocispec.Platform{{OS: "linux", Architecture: "amd64"}})
}

// buildBusyboxBlobs writes the blobs of a busybox image with binary as /bin/busybox, its config
// naming p, into layoutDir and returns the image (index.json is the caller's).
func buildBusyboxBlobs(layoutDir, binary string, p ocispec.Platform) (*image.Image, error) {
	rootfs, err := os.MkdirTemp("", "strata-busybox-rootfs-")
	if err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	defer os.RemoveAll(rootfs)
	if err := busyboxRootfs(rootfs, binary); err != nil {
		return nil, err
	}
	store, err := NewDirStore(layoutDir)
	if err != nil {
		return nil, err
	}
	layer, diffID, err := writeLayer(store, rootfs)
	if err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	epoch := time.Unix(0, 0).UTC()
	cfg := ocispec.Image{
		Created:  &epoch,
		Platform: p,
		Config: ocispec.ImageConfig{
			Env: []string{BusyboxPath},
			Cmd: []string{"sh"},
		},
		RootFS:  ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History: []ocispec.History{{Created: &epoch, CreatedBy: "strata testenv: busybox rootfs from " + historyName(binary)}},
	}
	cfgBytes, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	cfgDesc, err := putBytes(store, ocispec.MediaTypeImageConfig, cfgBytes)
	if err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{layer},
	}
	mBytes, err := json.Marshal(manifest)
	if err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	if _, err := putBytes(store, ocispec.MediaTypeImageManifest, mBytes); err != nil {
		return nil, fmt.Errorf("build busybox image: %w", err)
	}
	return image.Parse(mBytes, cfgBytes)
}

// historyName keeps the amd64 fixture's history (and so its digest) what it always was.
func historyName(binary string) string {
	if binary == HostBusybox {
		return HostBusybox
	}
	return "Debian busybox-static at " + binary
}

// writeLayoutIndex writes index.json naming manifests, tagged "latest" (a single image) or as
// one nested index (several platforms), and oci-layout.
func writeLayoutIndex(layoutDir string, manifests []ocispec.Descriptor, plats []ocispec.Platform) error {
	var top ocispec.Descriptor
	if len(manifests) == 1 {
		top = manifests[0]
		top.Platform = &plats[0]
	} else {
		idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
		for i, m := range manifests {
			m.Platform = &plats[i]
			idx.Manifests = append(idx.Manifests, m)
		}
		b, err := json.Marshal(idx)
		if err != nil {
			return err
		}
		store, err := NewDirStore(layoutDir)
		if err != nil {
			return err
		}
		if top, err = putBytes(store, ocispec.MediaTypeImageIndex, b); err != nil {
			return err
		}
	}
	top.Annotations = map[string]string{ocispec.AnnotationRefName: "latest"}
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{top},
	}
	if err := writeJSON(filepath.Join(layoutDir, ocispec.ImageIndexFile), index); err != nil {
		return fmt.Errorf("build busybox image: %w", err)
	}
	if err := writeJSON(filepath.Join(layoutDir, ocispec.ImageLayoutFile), ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}); err != nil {
		return fmt.Errorf("build busybox image: %w", err)
	}
	return nil
}

// writeLayer tars rootfs in sorted order with fixed metadata, gzips it straight into the store and
// returns its descriptor and diff ID, hashing both streams on the way so nothing is read twice.
func writeLayer(store *DirStore, rootfs string) (ocispec.Descriptor, digest.Digest, error) {
	tmp, err := os.CreateTemp(filepath.Join(store.Root, "blobs", "sha256"), ".layer-*")
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	compressed := sha256.New()
	counter := &countWriter{}
	gz := gzip.NewWriter(io.MultiWriter(tmp, compressed, counter))
	uncompressed := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, uncompressed))

	var paths []string
	err = filepath.WalkDir(rootfs, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != rootfs {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := addToTar(tw, rootfs, p); err != nil {
			return ocispec.Descriptor{}, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if err := gz.Close(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if err := tmp.Close(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	d := digest.NewDigest(digest.SHA256, compressed)
	if err := os.Rename(tmp.Name(), store.Path(d)); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: counter.n}
	return desc, digest.NewDigest(digest.SHA256, uncompressed), nil
}

func addToTar(tw *tar.Writer, rootfs, p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(rootfs, p)
	if err != nil {
		return err
	}
	mode := int64(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	hdr := &tar.Header{
		Name:    filepath.ToSlash(rel),
		Mode:    mode,
		ModTime: time.Unix(0, 0),
		Format:  tar.FormatPAX,
	}
	switch {
	case fi.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case fi.Mode()&fs.ModeSymlink != 0:
		hdr.Typeflag = tar.TypeSymlink
		if hdr.Linkname, err = os.Readlink(p); err != nil {
			return err
		}
	case fi.Mode().IsRegular():
		hdr.Typeflag = tar.TypeReg
		hdr.Size = fi.Size()
	default:
		return fmt.Errorf("%s: unsupported file type %s", p, fi.Mode().Type())
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

func putBytes(store *DirStore, mediaType string, b []byte) (ocispec.Descriptor, error) {
	d := digest.FromBytes(b)
	if err := store.Ingest(d, bytes.NewReader(b)); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
