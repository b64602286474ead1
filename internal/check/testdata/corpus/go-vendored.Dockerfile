FROM golang:1.21 AS build
ARG GIT_COMMIT
WORKDIR /go/src/app
COPY . .
RUN go build -mod=vendor -ldflags "-X main.commit=${GIT_COMMIT}" -o /app .

FROM scratch
COPY --from=build /app /app
ENTRYPOINT ["/app"]
