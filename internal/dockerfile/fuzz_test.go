package dockerfile

import (
	"context"
	"encoding/json"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// anyImage resolves every reference to a plain image, so the fuzzer gets past FROM.
type anyImage struct{}

func (anyImage) ResolveImageConfig(_ context.Context, ref string, _ ocispec.Platform) (string, dockerspec.DockerOCIImage, error) {
	var img dockerspec.DockerOCIImage
	img.Config.Env = []string{"PATH=/usr/bin:/bin"}
	return "sha256:" + repeat64('a'), img, nil
}

func repeat64(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

// Dockerfiles are user input: the frontend never panics on one, fails with a message, and gives
// the same graph every time it parses the same file (the graph feeds cache keys).
func FuzzParse(f *testing.F) {
	for _, df := range []string{
		"FROM alpine\nRUN echo hi\n",
		"ARG V=1\nFROM alpine AS a\nENV X=$V\nWORKDIR /w\nCOPY --chown=1:2 --chmod=u+x a b /w/\nUSER nobody\n",
		"FROM alpine AS a\nFROM a\nCOPY --from=a /x /y\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s cat /run/secrets/s\n",
		"# syntax=docker/dockerfile:1\nFROM alpine\nRUN <<EOF\necho a\nEOF\nCOPY <<F /f\nx\nF\n",
		"FROM alpine\nONBUILD RUN x\nHEALTHCHECK --interval=5s CMD true\nEXPOSE 80/tcp\nVOLUME /v\nSTOPSIGNAL SIGTERM\nSHELL [\"/bin/sh\",\"-c\"]\nENTRYPOINT [\"a\"]\nCMD b\nLABEL a=b\n",
		"FROM --platform=$BUILDPLATFORM alpine\nADD --checksum=sha256:" + repeat64('0') + " https://example.com/x /x\n",
		"FROM scratch\nCOPY --parents ./a/**/*.txt ./\nCOPY --exclude=*.md . /src\n",
	} {
		f.Add(df)
	}
	f.Fuzz(func(t *testing.T, df string) {
		parse := func() (string, error) {
			b, err := Parse(context.Background(), Options{Dockerfile: []byte(df), Filename: "Dockerfile", Resolver: anyImage{}})
			if err != nil {
				return "", err
			}
			out, err := json.Marshal(b.Stages)
			return string(out), err
		}
		g1, err := parse()
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		g2, err := parse()
		if err != nil || g1 != g2 {
			t.Fatalf("the same Dockerfile parsed differently (err %v)", err)
		}
	})
}
