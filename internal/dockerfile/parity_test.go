package dockerfile

import (
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/graph"
)

// Duplicate stage names are a warning in BuildKit (testDuplicateStageName): FROM sees the latest
// stage defined before it, while --target and COPY --from see the last one in the file
// (dispatchStates.addState and findStateByName in dockerfile2llb/convert.go).
func TestParityDuplicateStageNames(t *testing.T) {
	df := `FROM alpine AS b
RUN echo first
FROM alpine AS b
RUN echo second
FROM b AS child
FROM alpine AS b
RUN echo third
FROM alpine
COPY --from=child /x /x
COPY --from=b /y /y
`
	b := parse(t, df)
	if len(b.Warnings) != 2 || !strings.Contains(b.Warnings[0], `Dockerfile:3: DuplicateStageName: Duplicate stage name "b"`) ||
		!strings.HasPrefix(b.Warnings[1], "Dockerfile:6:") {
		t.Fatalf("warnings %q", b.Warnings)
	}
	byIndex := map[int]*graph.Stage{}
	for _, s := range b.Stages {
		byIndex[s.Index] = s
	}
	if child := byIndex[2]; child == nil || child.Base.Stage == nil || child.Base.Stage.Index != 1 {
		t.Fatalf("FROM b after two stages named b: base %+v", child)
	}
	steps := b.Target.Steps
	if src := steps[1].Copy.From.Stage; src == nil || src.Index != 3 {
		t.Fatalf("COPY --from=b reads stage %+v, want the last b (index 3)", src)
	}
	if _, ok := byIndex[0]; ok {
		t.Fatal("the first stage b is unused but was kept")
	}

	tb := parse(t, df, func(o *Options) { o.Target = "b" })
	if tb.Target.Index != 3 {
		t.Fatalf("--target b built stage %d, want 3", tb.Target.Index)
	}
}

// BuildKit resolves only the stages the target reaches, so a stage for another platform that the
// target does not use cannot fail the build (docker/buildx's own Dockerfile has such stages).
func TestParityUnusedForeignPlatformStage(t *testing.T) {
	df := `FROM --platform=windows/amd64 alpine AS tools
RUN echo win
FROM alpine
RUN echo ok
`
	b := parse(t, df)
	if len(b.Stages) != 1 {
		t.Fatalf("stages %d", len(b.Stages))
	}
	wantErr(t, df, 1, "FROM --platform=windows/amd64: only linux platforms can be built", func(o *Options) { o.Target = "tools" })
	wantErr(t, df+"COPY --from=tools /a /a\n", 1, "only linux platforms can be built")
	// A platform that does not parse is an error wherever it is, as in BuildKit.
	wantErr(t, "FROM --platform=linux/a/b/c alpine AS x\nFROM alpine\n", 1, "failed to parse platform")
}

// Symbolic --chmod values are accepted as BuildKit v0.33.1 accepts them (testChmodNonOctal);
// invalid values fail on their line with BuildKit's message (testCopyInvalidChmod).
func TestParityChmodValues(t *testing.T) {
	for _, m := range []string{"u=rw,g=r,o=r", "a+X", "go-w", "u+rw,g+r,o-x,o+w", "0755", "4755"} {
		b := parse(t, "FROM alpine\nCOPY --chmod="+m+" a /a\nADD --chmod="+m+" b /b\n")
		if got := b.Target.Steps[0].Copy.Chmod; got != m {
			t.Errorf("--chmod=%s recorded as %q", m, got)
		}
	}
	wantErr(t, "FROM alpine\nCOPY --chmod=64a a /a\n", 2, "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777")
	wantErr(t, "FROM alpine\n\nADD --chmod=u+q a /a\n", 3, "invalid chmod parameter: 'u+q'")
	wantErr(t, "FROM alpine\nCOPY --chmod=10000 a /a\n", 2, "between 0 and 07777")
}

// A lone numeric --chown user means uid:uid in BuildKit; the graph spells it that way so the cache
// key differs from the one strata used when it meant uid:0. History keeps what was written.
func TestParityChownSpelling(t *testing.T) {
	b := parse(t, "FROM alpine\nCOPY --chown=123 a /a\nCOPY --chown=app b /b\nCOPY --chown=5:6 c /c\n")
	for i, want := range []string{"123:123", "app", "5:6"} {
		if got := b.Target.Steps[i].Copy.Chown; got != want {
			t.Errorf("step %d chown %q, want %q", i, got, want)
		}
	}
	if got := b.Target.Steps[0].CreatedBy; got != "COPY --chown=123 a /a # buildkit" {
		t.Errorf("history %q", got)
	}
}
