# llama.cpp comes with the ollama module; cgo builds it with these flags.
# Plain `go build` needs them too: `eval "$(make env)"` sets them in a shell.
export CGO_CPPFLAGS := -I$(CURDIR)/internal/engine/include
export CGO_CFLAGS := -O3 -march=x86-64-v3
export CGO_CXXFLAGS := -O3 -march=x86-64-v3

.PHONY: build test env
build:
	go build -o bin/ ./cmd/...

test:
	go test -count=1 ./...

env:
	@echo 'export CGO_CPPFLAGS="$(CGO_CPPFLAGS)" CGO_CFLAGS="$(CGO_CFLAGS)" CGO_CXXFLAGS="$(CGO_CXXFLAGS)"'
