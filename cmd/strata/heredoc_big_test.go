package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestBigHeredocBuild builds heredocs big enough (≥ 1 MiB) for the frontend to hand BuildKit's
// parser placeholders instead of their bodies: the files must hold the bodies (expanded where the
// heredoc expands), and an error after them must name its own line and show it.
func TestBigHeredocBuild(t *testing.T) {
	e := newEnv(t)
	var sb strings.Builder
	for i := 0; sb.Len() < 2<<20; i++ {
		fmt.Fprintf(&sb, "line %d: 'quotes' \"and\" tabs\there\n", i)
	}
	plain := sb.String()
	lines := strings.Count(plain, "\n")
	df := "FROM {{BASE}}\nENV X=expanded\n" +
		"COPY <<EOF /plain.txt\n" + plain + "EOF\n" +
		"COPY <<EOF /expanded.txt\n$X\n" + plain + "EOF\n" +
		"COPY <<'EOF' /quoted.txt\n$X\n" + plain + "EOF\n" +
		"RUN <<EOF\n#!/bin/sh\n" + strings.ReplaceAll(plain, "line", "# line") +
		"tail -n +2 /quoted.txt | cmp - /plain.txt && echo same > /ran.txt\nEOF\n"
	ctx := e.project("bigheredoc", map[string]string{"Dockerfile": df})
	out := filepath.Join(e.dir, "out")
	e.build("-o", "type=local,dest="+out, ctx)
	if got := readFile(t, filepath.Join(out, "plain.txt")); got != plain {
		t.Errorf("/plain.txt has %d bytes, want the %d of the body", len(got), len(plain))
	}
	if got := readFile(t, filepath.Join(out, "expanded.txt")); got != "expanded\n"+plain {
		t.Errorf("/expanded.txt starts %q, want the body after \"expanded\"", got[:min(len(got), 40)])
	}
	if got := readFile(t, filepath.Join(out, "quoted.txt")); got != "$X\n"+plain {
		t.Errorf("/quoted.txt starts %q, want the body after \"$X\"", got[:min(len(got), 40)])
	}
	if got := readFile(t, filepath.Join(out, "ran.txt")); got != "same\n" {
		t.Errorf("/ran.txt = %q, want the script to have seen the files", got)
	}

	// The failing RUN's line counts every body line before it.
	// FROM, ENV; each COPY: its line, the body ("$X" adds one) and EOF; RUN: "#!", body, the
	// check and EOF.
	line := 2 + (lines + 2) + 2*(lines+3) + (lines + 4) + 1
	ctx = e.project("bigheredoc-fail", map[string]string{"Dockerfile": df + "RUN exit 3\n"})
	r := e.buildFail(ctx)
	if want := fmt.Sprintf("Dockerfile:%d:", line); !strings.Contains(r.out, want) {
		t.Errorf("want the error at %s\n%s", want, lastBytes(r.out, 2000))
	}
	if want := fmt.Sprintf(" %3d | >>> RUN exit 3", line); !strings.Contains(r.out, want) {
		t.Errorf("want the report to show %q\n%s", want, lastBytes(r.out, 2000))
	}
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
