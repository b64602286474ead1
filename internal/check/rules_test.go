package check

import (
	"reflect"
	"strings"
	"testing"
)

func TestRules(t *testing.T) {
	tests := []struct {
		name  string
		rule  string
		df    string
		files map[string]string // context; nil checks the Dockerfile alone
		want  []int             // lines the rule fires on
	}{
		// STR001
		{"copy all before npm ci", "STR001", "FROM node\nWORKDIR /app\nCOPY . .\nRUN npm ci\n", nil, []int{3}},
		{"add all before pip -r", "STR001", "FROM python\nADD . /app\nWORKDIR /app\nRUN pip install -r requirements.txt\n", nil, []int{2}},
		{"manifests first", "STR001", "FROM node\nWORKDIR /app\nCOPY package*.json ./\nRUN npm ci\nCOPY . .\nRUN npm run build\n", nil, nil},
		{"directory holding the manifest", "STR001", "FROM python\nCOPY api/ /srv/\nWORKDIR /srv\nRUN pip install -r requirements.txt\n", nil, []int{2}},
		{"directory without the manifest (context)", "STR001", "FROM node\nWORKDIR /app\nCOPY package.json ./\nCOPY src ./src\nRUN npm ci\n",
			map[string]string{"package.json": "{}", "src/a.js": ""}, nil},
		{"go build without download", "STR001", "FROM golang\nWORKDIR /src\nCOPY . .\nRUN go build ./...\n", nil, []int{3}},
		{"go build after download", "STR001", "FROM golang\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build ./...\n", nil, nil},
		{"go build with a module cache mount", "STR001", "FROM golang\nWORKDIR /src\nCOPY . .\nRUN --mount=type=cache,target=/go/pkg/mod go build ./...\n", nil, nil},
		{"go build vendored (context)", "STR001", "FROM golang\nWORKDIR /src\nCOPY . .\nRUN go build ./...\n", map[string]string{"go.mod": "", "vendor/modules.txt": ""}, nil},
		{"mvn package", "STR001", "FROM maven\nWORKDIR /app\nCOPY . .\nRUN mvn -B package\n", nil, []int{3}},
		{"gradle build", "STR001", "FROM gradle\nCOPY . /home/gradle/src\nWORKDIR /home/gradle/src\nRUN gradle build\n", nil, []int{2}},
		{"cargo build", "STR001", "FROM rust\nWORKDIR /app\nCOPY . .\nRUN cargo build --release\n", nil, []int{3}},
		{"bundle, composer, dotnet, mix, yarn, pnpm, bun, pipenv", "STR001", "FROM x\nWORKDIR /a\nCOPY . .\nRUN bundle install\n" +
			"FROM x\nWORKDIR /a\nCOPY . .\nRUN composer install\nFROM x\nWORKDIR /a\nCOPY . .\nRUN dotnet restore\nFROM x\nWORKDIR /a\nCOPY . .\nRUN mix deps.get\n" +
			"FROM x\nWORKDIR /a\nCOPY . .\nRUN yarn\nFROM x\nWORKDIR /a\nCOPY . .\nRUN pnpm install\nFROM x\nWORKDIR /a\nCOPY . .\nRUN bun install\nFROM x\nWORKDIR /a\nCOPY . .\nRUN pipenv install --deploy\n",
			nil, []int{3, 7, 11, 15, 19, 23, 27, 31}},
		{"poetry install with the project", "STR001", "FROM python\nWORKDIR /app\nCOPY . .\nRUN poetry install\n", nil, []int{3}},
		{"pip install . needs the sources", "STR001", "FROM python\nWORKDIR /app\nCOPY . .\nRUN pip install .\n", nil, nil},
		{"uv two-step", "STR001", "FROM python\nWORKDIR /app\nRUN --mount=type=bind,source=uv.lock,target=uv.lock uv sync --no-install-project\nCOPY . .\nRUN uv sync\n", nil, nil},
		{"global tool install is not a dependency install", "STR001", "FROM node\nCOPY . .\nRUN npm install -g pnpm\n", nil, nil},
		{"copy from a stage is not the context", "STR001", "FROM node AS a\nFROM node\nWORKDIR /app\nCOPY --from=a /app .\nRUN npm ci\n", nil, nil},
		{"install in another stage", "STR001", "FROM node AS deps\nWORKDIR /app\nCOPY package.json .\nRUN npm ci\nFROM node\nCOPY . .\nRUN npm run build\n", nil, nil},
		// Found missed on real-world files (testdata/realworld): npm's aliases, installs run in a
		// directory of their own, quoted project paths.
		{"npm clean-install is npm ci", "STR001", "FROM node\nWORKDIR /app\nCOPY ./web .\nRUN npm clean-install\n", nil, []int{3}},
		{"cd into the copied directory", "STR001", "FROM node\nWORKDIR /app\nCOPY js js\nRUN cd js && npm ci && npm run build\n", nil, []int{3}},
		{"cd into another directory", "STR001", "FROM node\nWORKDIR /app\nCOPY js js\nRUN cd web && npm ci\n", nil, nil},
		{"npm --prefix into the copied directory", "STR001", "FROM node\nWORKDIR /app\nCOPY assets assets\nRUN npm ci --prefix ./assets\n", nil, []int{3}},
		{"npm --prefix after its manifests", "STR001", "FROM node\nWORKDIR /app\nCOPY assets/package.json assets/package-lock.json ./assets/\nRUN npm ci --prefix ./assets\nCOPY assets assets\n", nil, nil},
		{"quoted dotnet project with a runtime", "STR001", "FROM sdk\nWORKDIR /src\nCOPY [\"/src/api/\", \"Api/\"]\nRUN dotnet restore \"./Api/Api.csproj\" -r linux-x64\n", nil, []int{3}},
		{"quoted dotnet project copied alone", "STR001", "FROM sdk\nWORKDIR /src\nCOPY [\"src/api/Api.csproj\", \"Api/\"]\nRUN dotnet restore \"./Api/Api.csproj\" -r linux-x64\nCOPY src/api Api\n", nil, nil},

		// STR002
		{"maven child poms missing", "STR002", "FROM maven\nWORKDIR /b\nCOPY pom.xml .\nRUN mvn dependency:go-offline\n",
			map[string]string{"pom.xml": "<modules><module>a</module></modules>", "a/pom.xml": ""}, []int{3}},
		{"maven child poms copied", "STR002", "FROM maven\nWORKDIR /b\nCOPY pom.xml .\nCOPY a/pom.xml a/\nRUN mvn dependency:go-offline\n",
			map[string]string{"pom.xml": "<modules><module>a</module></modules>", "a/pom.xml": ""}, nil},
		{"single-module maven", "STR002", "FROM maven\nWORKDIR /b\nCOPY pom.xml .\nRUN mvn dependency:go-offline\n", map[string]string{"pom.xml": "<project/>"}, nil},
		{"cargo workspace", "STR002", "FROM rust\nWORKDIR /b\nCOPY Cargo.toml Cargo.lock ./\nRUN cargo fetch\n",
			map[string]string{"Cargo.toml": "[workspace]\nmembers = [\"a\"]\n", "Cargo.lock": "", "a/Cargo.toml": ""}, []int{3}},
		{"npm workspaces via --parents glob", "STR002", "FROM node\nWORKDIR /r\nCOPY package.json ./\nCOPY --parents apps/**/package.json ./\nRUN npm ci\n",
			map[string]string{"package.json": `{"workspaces":["apps/*"]}`, "apps/w/package.json": "{}"}, nil},
		{"no context, no finding", "STR002", "FROM maven\nCOPY pom.xml .\nRUN mvn dependency:go-offline\n", nil, nil},

		// STR003
		{"npm ci without a cache mount", "STR003", "FROM node\nCOPY package.json .\nRUN npm ci\n", nil, []int{3}},
		{"npm ci with a cache mount", "STR003", "FROM node\nCOPY package.json .\nRUN --mount=type=cache,target=/root/.npm npm ci\n", nil, nil},
		{"apk --no-cache is not a language cache", "STR003", "FROM alpine\nRUN apk add --no-cache curl\n", nil, nil},
		{"go build after go mod download downloads nothing", "STR003", "FROM golang\nCOPY go.mod .\nRUN --mount=type=cache,target=/go/pkg/mod go mod download\nCOPY . .\nRUN go build .\n", nil, nil},

		// STR004: with a cache mount, "clean your cache" is wrong (hadolint#497); cleaning is the bug.
		{"pip --no-cache-dir inside a pip cache mount", "STR004", "FROM python\nRUN --mount=type=cache,target=/root/.cache/pip pip install --no-cache-dir -r r.txt\n", nil, []int{2}},
		{"npm cache clean inside a cache mount", "STR004", "FROM node\nRUN --mount=type=cache,target=/root/.npm npm ci && npm cache clean --force\n", nil, []int{2}},
		{"apt cache mounts without clean", "STR004", "FROM debian\nRUN --mount=type=cache,target=/var/cache/apt,sharing=locked --mount=type=cache,target=/var/lib/apt,sharing=locked apt-get update && apt-get install -y gcc\n", nil, nil},
		{"rm of the mounted directory", "STR004", "FROM python\nRUN --mount=type=cache,target=/root/.cache/pip pip install -r r.txt && rm -rf /root/.cache/pip\n", nil, []int{2}},

		// STR005
		{"update in its own RUN", "STR005", "FROM debian\nRUN apt-get update\nRUN apt-get install -y curl\n", nil, []int{2}},
		{"update and install together", "STR005", "FROM debian\nRUN apt-get update && apt-get install -y curl\n", nil, nil},
		{"update with nothing installed later", "STR005", "FROM debian\nRUN apt-get update\n", nil, nil},

		// STR006
		{"no .dockerignore, .git and node_modules", "STR006", "FROM node\nCOPY . .\n", map[string]string{".git/HEAD": "", "node_modules/a/x": "", "a.js": ""}, []int{2}},
		{"with .dockerignore", "STR006", "FROM node\nCOPY . .\n", map[string]string{".git/HEAD": "", ".dockerignore": ".git\n"}, nil},
		{"no broad copy", "STR006", "FROM node\nCOPY a.js .\n", map[string]string{".git/HEAD": "", "a.js": ""}, nil},
		{"dist copied on purpose", "STR006", "FROM nginx\nCOPY dist /usr/share/nginx/html\n", map[string]string{"dist/index.html": ""}, nil},

		// STR007
		{"copy of an ignored file", "STR007", "FROM x\nCOPY secrets.env /etc/\n", map[string]string{".dockerignore": "*.env\n", "secrets.env": ""}, []int{2}},
		{"re-included by an exception", "STR007", "FROM x\nCOPY conf/app.toml /etc/\n", map[string]string{".dockerignore": "conf\n!conf/app.toml\n", "conf/app.toml": ""}, nil},

		// STR008
		{"build date before runs", "STR008", "FROM x\nARG BUILD_DATE\nRUN make\nLABEL d=$BUILD_DATE\n", nil, []int{2}},
		{"git sha used by the first RUN", "STR008", "FROM x\nARG GIT_SHA\nRUN echo $GIT_SHA > /v\n", nil, nil},
		{"build date after the runs", "STR008", "FROM x\nRUN make\nARG BUILD_DATE\nLABEL d=$BUILD_DATE\n", nil, nil},
		{"ordinary ARG", "STR008", "FROM x\nARG NODE_VERSION\nRUN make\n", nil, nil},
		{"global ARG only", "STR008", "ARG GIT_SHA\nFROM x\nRUN make\n", nil, nil},

		// STR009
		{"ADD url", "STR009", "FROM x\nADD https://e.com/a.tgz /a/\n", nil, []int{2}},
		{"ADD url with checksum", "STR009", "FROM x\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://e.com/a.tgz /a/\n", nil, nil},
		{"ADD git", "STR009", "FROM x\nADD https://github.com/a/b.git /src\n", nil, nil},

		// STR010
		{"volume then chown", "STR010", "FROM x\nVOLUME /data\nRUN chown -R 1000 /data\n", nil, []int{2}},
		{"volume last", "STR010", "FROM x\nRUN mkdir /data\nVOLUME /data\n", nil, nil},
		{"similar path", "STR010", "FROM x\nVOLUME /data\nRUN mkdir /database\n", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.rule+"/"+tt.name, func(t *testing.T) {
			r := lint(t, tt.df, tt.files)
			if got := lines(r, tt.rule); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s fires on lines %v, want %v\n%s", tt.rule, got, tt.want, tt.df)
			}
		})
	}
}

func TestDisableComments(t *testing.T) {
	df := "FROM node\nWORKDIR /app\n# strata-check-disable=STR001\nCOPY . .\nRUN npm ci\nFROM node\nCOPY . /b\nWORKDIR /b\nRUN npm ci\n"
	r := lint(t, df, nil)
	if got := lines(r, "STR001"); !reflect.DeepEqual(got, []int{7}) {
		t.Errorf("STR001 on %v, want only line 7 (line 4 is disabled)", got)
	}
	r = lint(t, "# strata-check-disable=package-cache-without-mount,STR001\nFROM node\nCOPY . .\nRUN npm ci\n", nil)
	if len(r.Findings) != 0 {
		t.Errorf("file-wide disable left %v", r.Findings)
	}
}

func TestFindingCarriesTheStepItAffects(t *testing.T) {
	r := lint(t, "FROM node AS web\nWORKDIR /app\nCOPY . .\nENV A=1\nRUN npm ci\n", nil)
	for _, f := range r.Findings {
		if f.Rule == "STR001" {
			want := Step{Stage: "web", Pos: 4, Line: 5, Text: "RUN npm ci"}
			if f.Affects != want {
				t.Errorf("Affects = %+v, want %+v", f.Affects, want)
			}
			return
		}
	}
	t.Fatal("no STR001")
}

func TestParseErrorNamesFileAndLine(t *testing.T) {
	_, err := Check(Options{Path: "app/Dockerfile", Dockerfile: []byte("FROM x\nCOPY\n")})
	if err == nil || !strings.Contains(err.Error(), "app/Dockerfile") || !strings.Contains(err.Error(), "2") {
		t.Fatalf("err = %v, want it to name app/Dockerfile and line 2", err)
	}
}

func TestReportLines(t *testing.T) {
	r := lint(t, "FROM x\nADD https://e.com/a /a\n", nil)
	want := []string{"Dockerfile:2: warning STR009: ADD https://e.com/a has no --checksum: it is downloaded on every build to see whether it changed"}
	if got := r.Lines(); !reflect.DeepEqual(got, want) {
		t.Errorf("Lines() = %q, want %q", got, want)
	}
}
