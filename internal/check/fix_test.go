package check

import (
	"strings"
	"testing"
)

func fix(t *testing.T, df string, files map[string]string) *FixResult {
	t.Helper()
	o := Options{Path: "Dockerfile", Dockerfile: []byte(df)}
	if files != nil {
		o.Context = writeContext(t, ctxFiles(files))
	}
	res, err := Fix(o)
	if err != nil {
		t.Fatal(err)
	}
	// every rewrite parses, and what it fixed no longer fires
	o.Dockerfile = []byte(res.Dockerfile)
	r, err := Check(o)
	if err != nil {
		t.Fatalf("rewritten file does not parse: %v\n%s", err, res.Dockerfile)
	}
	for _, a := range res.Applied {
		if n := len(lines(r, a.Rule)); n > 0 && a.Rule != "STR006" {
			t.Errorf("%s applied but still fires %d time(s)\n%s", a.Rule, n, res.Dockerfile)
		}
	}
	return res
}

const noMountAdvice = "# strata-check-disable=STR003\n"

func TestFixes(t *testing.T) {
	tests := []struct {
		name  string
		df    string
		files map[string]string
		want  string
	}{
		{"npm: manifests, install, rest; the build part of the RUN after the sources",
			noMountAdvice + "FROM node:20 AS build\nWORKDIR /app\n# everything\nCOPY --chown=node . .\nENV NODE_ENV=production\nRUN npm ci && npm run build\n\nFROM nginx\nCOPY --from=build /app/dist /usr/share/nginx/html\n", nil,
			noMountAdvice + "FROM node:20 AS build\nWORKDIR /app\n# everything\nCOPY --chown=node package.json package-lock.json* npm-shrinkwrap.json* ./\nENV NODE_ENV=production\nRUN npm ci\nCOPY --chown=node . .\nRUN npm run build\n\nFROM nginx\nCOPY --from=build /app/dist /usr/share/nginx/html\n"},
		{"npm with a context: only the manifests that exist",
			noMountAdvice + "FROM node:20\nWORKDIR /app\nCOPY . .\nRUN npm ci --omit=dev\nCMD [\"node\", \"index.js\"]\n",
			map[string]string{"package.json": "{}", "package-lock.json": "{}", "index.js": "", ".dockerignore": "node_modules\n"},
			noMountAdvice + "FROM node:20\nWORKDIR /app\nCOPY package.json package-lock.json ./\nRUN npm ci --omit=dev\nCOPY . .\nCMD [\"node\", \"index.js\"]\n"},
		{"pip -r into an absolute directory, WORKDIR between",
			noMountAdvice + "FROM python:3.12\nCOPY . /app\nWORKDIR /app\nRUN pip install -r requirements.txt\nCMD [\"python\", \"app.py\"]\n", nil,
			noMountAdvice + "FROM python:3.12\nCOPY requirements.txt /app/\nWORKDIR /app\nRUN pip install -r requirements.txt\nCOPY . /app\nCMD [\"python\", \"app.py\"]\n"},
		{"go build: download first",
			noMountAdvice + "FROM golang:1.22\nWORKDIR /src\nCOPY . .\nRUN go build -o /app .\n", nil,
			noMountAdvice + "FROM golang:1.22\nWORKDIR /src\nCOPY go.mod go.sum* ./\nRUN go mod download\nCOPY . .\nRUN go build -o /app .\n"},
		{"poetry: install without the project first",
			noMountAdvice + "FROM python:3.11\nWORKDIR /app\nCOPY . .\nRUN poetry install --only main\n", nil,
			noMountAdvice + "FROM python:3.11\nWORKDIR /app\nCOPY pyproject.toml poetry.lock* ./\nRUN poetry install --no-root --only main\nCOPY . .\nRUN poetry install --only main\n"},
		{"apt-get update joins the install",
			"FROM debian\n# tools\nRUN apt-get update\nRUN apt-get install -y \\\n    curl \\\n    git\n", nil,
			"FROM debian\n# tools\nRUN apt-get update && apt-get install -y \\\n    curl \\\n    git\n"},
		{"volatile ARG moves to its first use",
			"FROM alpine\nARG GIT_SHA\nLABEL rev=$GIT_SHA\nRUN apk add --no-cache curl\nRUN echo $GIT_SHA > /rev\n", nil,
			"FROM alpine\nRUN apk add --no-cache curl\nARG GIT_SHA\nLABEL rev=$GIT_SHA\nRUN echo $GIT_SHA > /rev\n"},
		{"VOLUME after the writes",
			"FROM alpine\nVOLUME /data\nRUN mkdir -p /data/db && chown 1000 /data/db\nUSER 1000\n", nil,
			"FROM alpine\nRUN mkdir -p /data/db && chown 1000 /data/db\nVOLUME /data\nUSER 1000\n"},
		{"maven child POMs copied after the root one",
			noMountAdvice + "FROM maven:3.9\nWORKDIR /b\nCOPY pom.xml .\nRUN mvn -B dependency:go-offline\nCOPY . .\nRUN mvn -B -o package\n",
			map[string]string{"pom.xml": "<modules><module>core</module><module>app</module></modules>", "core/pom.xml": "", "app/pom.xml": "", ".dockerignore": "target\n"},
			noMountAdvice + "FROM maven:3.9\nWORKDIR /b\nCOPY pom.xml .\nCOPY core/pom.xml core/\nCOPY app/pom.xml app/\nRUN mvn -B dependency:go-offline\nCOPY . .\nRUN mvn -B -o package\n"},
		{"cache mount added",
			"FROM node\nWORKDIR /app\nCOPY package.json ./\nRUN  npm ci\n", nil,
			"FROM node\nWORKDIR /app\nCOPY package.json ./\nRUN --mount=type=cache,target=/root/.npm npm ci\n"},
		{"no rewrite when a step between reads the sources",
			noMountAdvice + "FROM node\nWORKDIR /app\nCOPY . .\nRUN ./scripts/prepare.sh\nRUN npm ci\n", nil,
			noMountAdvice + "FROM node\nWORKDIR /app\nCOPY . .\nRUN ./scripts/prepare.sh\nRUN npm ci\n"},
		{"disabled findings are not fixed",
			"FROM node\nWORKDIR /app\n# strata-check-disable=STR001\nCOPY . .\n# strata-check-disable=STR003\nRUN npm ci\n", nil,
			"FROM node\nWORKDIR /app\n# strata-check-disable=STR001\nCOPY . .\n# strata-check-disable=STR003\nRUN npm ci\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := fix(t, tt.df, tt.files)
			if res.Dockerfile != tt.want {
				t.Errorf("got\n%s\nwant\n%s\ndiff:\n%s", res.Dockerfile, tt.want, UnifiedDiff("want", "got", tt.want, res.Dockerfile))
			}
		})
	}
}

func TestFixWritesDockerignore(t *testing.T) {
	res := fix(t, noMountAdvice+"FROM node\nWORKDIR /app\nCOPY package.json .\nRUN npm ci\nCOPY . .\n",
		map[string]string{"package.json": "{}", ".git/HEAD": "", "node_modules/x/y.js": "", "dist/a.js": ""})
	got := res.Files[".dockerignore"]
	for _, p := range []string{".git\n", "node_modules\n", "dist\n"} {
		if !strings.Contains(got, p) {
			t.Errorf(".dockerignore %q lacks %q", got, p)
		}
	}
}

func TestUnsafeFixIsReported(t *testing.T) {
	res := fix(t, noMountAdvice+"FROM node\nWORKDIR /app\nCOPY . .\nRUN ./prepare.sh\nRUN npm ci\n", nil)
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "STR001") || !strings.Contains(res.Skipped[0], "Dockerfile:4") {
		t.Errorf("Skipped = %q, want the STR001 at Dockerfile:4", res.Skipped)
	}
}

func TestUnifiedDiff(t *testing.T) {
	a := "FROM x\nCOPY . .\nRUN npm ci\nCMD a\n"
	b := "FROM x\nCOPY package.json ./\nRUN npm ci\nCOPY . .\nCMD a\n"
	want := "--- a/Dockerfile\n+++ b/Dockerfile\n@@ -1,4 +1,5 @@\n FROM x\n-COPY . .\n+COPY package.json ./\n RUN npm ci\n+COPY . .\n CMD a\n"
	if got := UnifiedDiff("a/Dockerfile", "b/Dockerfile", a, b); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if UnifiedDiff("a", "b", a, a) != "" {
		t.Error("diff of equal texts is not empty")
	}
}

// TestFixSkipsInstallInOtherDirectory: the manifest copies a rewrite would insert are computed
// from the RUN's working directory, so an install that runs elsewhere (cd, --prefix) is
// reported but not rewritten.
func TestFixSkipsInstallInOtherDirectory(t *testing.T) {
	df := noMountAdvice + "FROM node\nWORKDIR /app\nCOPY js js\nRUN cd js && npm ci\n"
	res := fix(t, df, nil)
	for _, a := range res.Applied {
		if a.Rule == "STR001" {
			t.Errorf("STR001 rewritten:\n%s", res.Dockerfile)
		}
	}
	if len(lines(lint(t, df, nil), "STR001")) != 1 {
		t.Errorf("STR001 not reported")
	}
}
