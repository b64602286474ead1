FROM golang:1.22 AS build
ARG BUILD_DATE
ARG VCS_REF
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -ldflags "-X main.version=${VCS_REF}" -o /bin/app .

FROM alpine:3.20
ARG BUILD_DATE
ARG VCS_REF
LABEL org.opencontainers.image.created=$BUILD_DATE org.opencontainers.image.revision=$VCS_REF
COPY --from=build /bin/app /bin/app
