FROM golang:1.23
WORKDIR /app
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build go build -o /bin/app ./cmd/app
CMD ["/bin/app"]
