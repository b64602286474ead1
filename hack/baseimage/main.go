// Command baseimage writes the busybox base image the tests use (made from Debian's
// busybox-static) as an OCI layout, so scripts can push it to a local registry.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/strata-build/strata/internal/testenv"
)

func main() {
	layout := flag.String("layout", "", "OCI layout directory to write")
	flag.Parse()
	if *layout == "" {
		fmt.Fprintln(os.Stderr, "usage: baseimage -layout DIR")
		os.Exit(2)
	}
	img, err := testenv.BuildBusyboxImage(*layout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "baseimage:", err)
		os.Exit(1)
	}
	fmt.Println(img.Manifest.Digest)
}
