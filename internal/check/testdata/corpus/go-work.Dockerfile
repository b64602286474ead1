FROM golang:1.22 AS build
WORKDIR /src
COPY go.work go.work.sum ./
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod go build -o /out/api ./services/api
