# llama.cpp comes with the ollama module; cgo builds it with these flags.
# -march=x86-64-v3 gives llama.cpp its SIMD (the default flags generate
# about 2x slower); -Wno-stringop-overflow quiets a false alarm of gcc 12 in
# ggml's repack.cpp. Plain `go build` needs them too: `eval "$(make env)"`
# sets them in a shell.
export CGO_CPPFLAGS := -I$(CURDIR)/internal/engine/include
export CGO_CFLAGS := -O3 -march=x86-64-v3
export CGO_CXXFLAGS := -O3 -march=x86-64-v3 -Wno-stringop-overflow

# Debian packages: llama.cpp's vendored headers the Go module download
# leaves out, curl for the demo, and Chromium for the page's browser test.
BUILD_PACKAGES := nlohmann-json3-dev libstb-dev
DEMO_PACKAGES := $(BUILD_PACKAGES) curl
TEST_PACKAGES := $(BUILD_PACKAGES) chromium

MODEL_PATH ?= $(CURDIR)/../shared/models/stories260K.gguf
export MODEL_PATH

.PHONY: build test demo bench fuzz lint env deps deps-test
build: deps
	go build -o bin/ ./cmd/...

## Every test: unit, integration on an embedded NATS server and the real
## model, the fuzz seed corpus, the page in headless Chromium.
test: deps-test
	go vet ./...
	go test -count=1 -timeout 20m ./...

## A worker with its embedded NATS, the bridge, a job streamed two ways.
demo: build
	@scripts/demo.sh

## Side by side: raw engine, NATS subscriber, SSE client; and the bridge
## holding many streams.
bench: deps
	go test -run '^$$' -bench . -benchtime 1x -timeout 20m ./bench/ ./internal/bridge/ ./internal/worker/

fuzz: deps
	go test -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 60s ./internal/jobs/

lint: deps
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

env:
	@echo 'export CGO_CPPFLAGS="$(CGO_CPPFLAGS)" CGO_CFLAGS="$(CGO_CFLAGS)" CGO_CXXFLAGS="$(CGO_CXXFLAGS)"'

deps:
	@scripts/apt-install.sh $(DEMO_PACKAGES)

deps-test:
	@scripts/apt-install.sh $(TEST_PACKAGES)
