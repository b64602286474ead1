package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ForeignBusyboxDir caches Debian's busybox-static of other architectures, one directory per
// architecture holding the unpacked package (hack/deps fills it; ForeignBusybox fills it too).
const ForeignBusyboxDir = "/var/cache/strata-test/busybox-static"

// ForeignBusybox returns the static busybox binary of Debian's busybox-static for a Debian
// architecture (arm64, armhf, riscv64…), downloading and unpacking the package once with
// `apt-get download busybox-static:ARCH` (the architecture must be added with
// `dpkg --add-architecture ARCH` and `apt-get update`; see hack/deps).
func ForeignBusybox(debArch string) (string, error) {
	dir := filepath.Join(ForeignBusyboxDir, debArch)
	bin := filepath.Join(dir, "root", "bin", "busybox")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp, err := os.MkdirTemp("", "strata-busybox-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command("apt-get", "download", "busybox-static:"+debArch)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download busybox-static:%s (run `dpkg --add-architecture %s && apt-get update`, or hack/deps): %v: %s", debArch, debArch, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "busybox-static_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download busybox-static:%s left %d packages", debArch, len(debs))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unpack, err := os.MkdirTemp(dir, ".unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(unpack)
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], unpack).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v: %s", debs[0], err, out)
	}
	if _, err := os.Stat(filepath.Join(unpack, "bin", "busybox")); err != nil {
		return "", fmt.Errorf("busybox-static:%s has no /bin/busybox: %w", debArch, err)
	}
	if err := os.Rename(unpack, filepath.Join(dir, "root")); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	return bin, nil
}

// debArch names Debian's architecture for a platform's busybox-static package.
var debArch = map[string]string{
	"linux/arm64":   "arm64",
	"linux/arm/v7":  "armhf",
	"linux/386":     "i386",
	"linux/ppc64le": "ppc64el",
	"linux/s390x":   "s390x",
	"linux/riscv64": "riscv64",
}

// PushBusyboxIndex pushes a two-platform busybox (linux/amd64 from the host's busybox-static,
// linux/arm64 from Debian's busybox-static:arm64) as one OCI image index to ADDR/repoTag, and
// returns the reference.
func PushBusyboxIndex(reg *Registry, repoTag string) (string, error) {
	return PushBusyboxPlatforms(reg, repoTag, ocispec.Platform{OS: "linux", Architecture: "amd64"}, ocispec.Platform{OS: "linux", Architecture: "arm64"})
}

// PushBusyboxPlatforms pushes a busybox index with one image per platform: linux/amd64 from the
// host's busybox-static, the others from Debian's busybox-static of their architecture
// (ForeignBusybox).
func PushBusyboxPlatforms(reg *Registry, repoTag string, plats ...ocispec.Platform) (string, error) {
	dir, err := os.MkdirTemp("", "strata-busybox-index-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	var manifests []ocispec.Descriptor
	for _, p := range plats {
		bin := HostBusybox
		if name := p.OS + "/" + p.Architecture; name != "linux/amd64" {
			if p.Variant != "" {
				name += "/" + p.Variant
			}
			arch, ok := debArch[name]
			if !ok {
				return "", fmt.Errorf("no Debian busybox-static for %s", name)
			}
			if bin, err = ForeignBusybox(arch); err != nil {
				return "", err
			}
		}
		img, err := buildBusyboxBlobs(dir, bin, p)
		if err != nil {
			return "", err
		}
		manifests = append(manifests, img.Manifest)
	}
	if err := writeLayoutIndex(dir, manifests, plats); err != nil {
		return "", err
	}
	ref := reg.Addr() + "/" + repoTag
	if err := Skopeo("copy", "--quiet", "--all", "--preserve-digests", "--dest-tls-verify=false", "oci:"+dir+":latest", "docker://"+ref); err != nil {
		return "", fmt.Errorf("push busybox index: %w", err)
	}
	return ref, nil
}
