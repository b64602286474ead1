package remotecache

import (
	"encoding/csv"
	"fmt"
	"strings"
)

// Attrs splits a buildx-style flag value, KEY=VALUE pairs separated by commas, read as one CSV
// record so a quoted pair may hold commas ("name=a,b"). A part without "=" right after name=
// continues the list of names (name=a,b), which buildx would reject but which can only mean that;
// anywhere else it is an error. flag names the flag in errors. --cache-from, --cache-to and
// --output all use it.
func Attrs(flag, s string) (map[string]string, error) {
	r := csv.NewReader(strings.NewReader(s))
	r.LazyQuotes = true
	fields, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s %q: %v", flag, s, err)
	}
	attrs := map[string]string{}
	last := ""
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			if last != "name" {
				return nil, fmt.Errorf("%s %q: %q is not KEY=VALUE", flag, s, f)
			}
			attrs[last] += "," + f
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := attrs[k]; dup {
			return nil, fmt.Errorf("%s %q: %s= given twice", flag, s, k)
		}
		attrs[k], last = v, k
	}
	return attrs, nil
}
