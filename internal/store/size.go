package store

import (
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

var sizeRe = regexp.MustCompile(`^(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$`)

// ParseSize reads a size the way docker does for --keep-storage and --memory (go-units
// RAMInBytes): a number with an optional k, m, g, t or p suffix, optionally followed by "b" or
// "ib", all binary multiples ("10GB" = 10 GiB, "512MB", "1.5g", "1024" bytes).
func ParseSize(s string) (int64, error) {
	m := sizeRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("invalid size %q (use e.g. 512MB, 10GB, 1.5g)", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	mult := 1.0
	switch strings.ToLower(m[2]) {
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	case "t":
		mult = 1 << 40
	case "p":
		mult = 1 << 50
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}

// MaxDefaultLimit caps the default GC limit.
const MaxDefaultLimit = 20 << 30

// DefaultLimit is the automatic GC limit when none is configured: the smaller of 10% of the
// filesystem holding the store and 20 GiB.
func DefaultLimit(root string) int64 {
	var fs unix.Statfs_t
	// The store may not exist yet: measure the nearest existing parent.
	for p := filepath.Clean(root); unix.Statfs(p, &fs) != nil; p = filepath.Dir(p) {
		if p == filepath.Dir(p) {
			return MaxDefaultLimit
		}
	}
	disk := int64(fs.Blocks) * int64(fs.Bsize)
	if disk <= 0 {
		return MaxDefaultLimit
	}
	return min(disk/10, MaxDefaultLimit)
}

// FormatSize prints a byte count in decimal units as `docker images` does (1.2MB).
func FormatSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%cB", float64(n)/float64(div), "kMGTPE"[exp])
}
