package snapshot

import (
	"fmt"
	"strings"

	"github.com/strata-build/strata/internal/userns"
)

// In a user namespace overlayfs cannot use trusted.* xattrs (they need CAP_SYS_ADMIN on the host),
// so it is mounted with userxattr (Linux 5.11+) and keeps its metadata under user.overlay.*; the
// layers a rootless store unpacks mark opaque directories there instead. Diff reads both, so an
// upper directory gives the same tar either way.

// opaqueXattr is the xattr that marks an opaque directory for the overlays this process mounts.
func opaqueXattr() string {
	if userns.Running() {
		return userOverlayXattrNS + "opaque"
	}
	return xattrOpaque
}

// overlayXattr returns name in the trusted.overlay.* spelling if it is overlay metadata in either
// namespace.
func overlayXattr(name string) (string, bool) {
	if rest, ok := strings.CutPrefix(name, userOverlayXattrNS); ok {
		return overlayXattrNS + rest, true
	}
	return name, strings.HasPrefix(name, overlayXattrNS)
}

// errUserNSOverlay explains a refused overlay mount in a user namespace.
func errUserNSOverlay(err error) error {
	return fmt.Errorf("%w: this kernel cannot mount overlayfs with userxattr in a user namespace (rootless builds need Linux 5.11 or later, and a sandbox that allows mount(2) in user namespaces)", err)
}

// chownError wraps a failed chown of a layer entry, saying so when the id is beyond a rootless
// build's ranges.
func chownError(err error, uid, gid int) error {
	return fmt.Errorf("chown: %w", userns.ChownError(err, uid, gid))
}
