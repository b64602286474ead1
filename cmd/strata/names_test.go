package main

import (
	"strings"
	"testing"
)

// An image name that cannot be used fails the build before any step runs, naming the flag.
func TestBadNamesFailBeforeSteps(t *testing.T) {
	e := newEnv(t)
	ctx := e.project("names", map[string]string{
		"Dockerfile": "FROM " + testReg.Addr() + "/busybox:latest\nRUN echo ran > /ran\n",
	})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-t", "Upper:1"}, `-t Upper:1: invalid image reference "Upper:1"`},
		{[]string{"-o", "type=image,name=bad name"}, `--output type=image: name=bad name: invalid image reference`},
		{[]string{"--push", "-t", "reg.example/a:b:c"}, `-t reg.example/a:b:c: invalid image reference`},
	} {
		r := e.buildFail(append(c.args, ctx)...)
		if !strings.Contains(r.out, c.want) {
			t.Errorf("%v: error does not say %q:\n%s", c.args, c.want, r.out)
		}
		if strings.Contains(r.out, "RUN echo ran") {
			t.Errorf("%v: a step started before the name was checked:\n%s", c.args, r.out)
		}
	}
}
