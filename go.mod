module github.com/strata-build/strata

go 1.26.8

require (
	github.com/moby/docker-image-spec v1.3.1
	github.com/opencontainers/image-spec v1.1.1
)

require github.com/opencontainers/go-digest v1.0.0 // indirect
