# llama.cpp comes with the ollama module; cgo builds it with these flags.
# -march gives llama.cpp its SIMD (the default flags generate about 2x
# slower code). CPU is the x86-64 level to compile for: `make build` picks
# this machine's own (scripts/cpu-level.sh: x86-64-v2, -v3 or -v4, v4
# being AVX-512) unless told, e.g. CPU=x86-64-v3; the other targets use
# x86-64-v3 unless told, the level the shared build cache holds. A binary
# checks at start that its CPU has the level (internal/cpulevel).
# -Wno-stringop-overflow quiets a false alarm of gcc 12 in ggml's
# repack.cpp. Plain `go build` needs these too: `eval "$(make env)"` sets
# them in a shell.
ifeq ($(origin CPU),undefined)
build: CPU = $(shell scripts/cpu-level.sh)
endif
CPU ?= x86-64-v3
export CGO_CPPFLAGS := -I$(CURDIR)/internal/engine/include
export CGO_CFLAGS = -O3 -march=$(CPU)
export CGO_CXXFLAGS = -O3 -march=$(CPU) -Wno-stringop-overflow

# Debian packages: llama.cpp's vendored headers the Go module download
# leaves out, curl for the demo, and Chromium for the page's browser test.
BUILD_PACKAGES := nlohmann-json3-dev libstb-dev
DEMO_PACKAGES := $(BUILD_PACKAGES) curl
TEST_PACKAGES := $(BUILD_PACKAGES) chromium

MODEL_PATH ?= $(CURDIR)/../shared/models/stories260K.gguf
export MODEL_PATH

# The bench's model of real size: a Llama of 134M parameters with random
# weights (speed does not depend on them), written once into a cache.
BENCH_MODELS ?= $(HOME)/.cache/llmworker
BENCH_MODEL ?= $(BENCH_MODELS)/llama-134m-f16.gguf
BENCH_MODEL_Q8 ?= $(BENCH_MODELS)/llama-134m-q8_0.gguf

.PHONY: build test demo bench soak fuzz lint tidy env deps deps-test cross-arm64
build: deps
	go build -o bin/ ./cmd/...

## Every test: unit, integration on an embedded NATS server and the real
## model, the fuzz seed corpus, the page in headless Chromium, the official
## OpenAI clients (Go and npm) against the bridge.
## Lint and the tidy check come first, so CI holds the line on both.
test: deps-test tidy lint
	go test -count=1 -timeout 20m ./...

## A worker with its embedded NATS, the bridge, a job streamed two ways.
demo: build
	@scripts/demo.sh

## Side by side: bare llama.cpp, the engine, a NATS subscriber, an SSE
## client, on the test model and on a generated 134M Llama (F16, then the
## paths again in Q8_0); and the bridge holding many streams.
bench: deps $(BENCH_MODEL) $(BENCH_MODEL_Q8)
	BENCH_MODEL=$(BENCH_MODEL) go test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench/ ./internal/bridge/ ./internal/worker/
	BENCH_MODEL=$(BENCH_MODEL_Q8) go test -run '^$$' -bench 'BenchmarkRealSize$$' -benchtime 1x -timeout 30m ./bench/

$(BENCH_MODELS)/llama-134m-%.gguf:
	mkdir -p $(BENCH_MODELS)
	go run ./cmd/mkmodel -type $* -o $@

## The worker and the bridge for arm64 (armv8.2-a: fp16 and dot
## product), cross-compiled with Debian's cross compiler, into bin/arm64/.
cross-arm64: deps
	@scripts/apt-install.sh gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
	CGO_ENABLED=1 GOARCH=arm64 CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ \
	CGO_CFLAGS="-O3 -march=armv8.2-a+fp16+dotprod" \
	CGO_CXXFLAGS="-O3 -march=armv8.2-a+fp16+dotprod -Wno-stringop-overflow" \
	go build -o bin/arm64/ ./cmd/...

## Not in CI: SOAK_JOBS jobs (2000) through the bridge on a three-node
## R3 cluster while a worker is killed, one stalls past the ack wait and a
## NATS node restarts; prints jobs lost, broken stories, complete streams.
soak: deps
	SOAK=1 go test -count=1 -run '^TestSoak$$' -v -timeout 60m ./internal/faults/

fuzz: deps
	go test -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 60s ./internal/jobs/

lint: deps
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## Fails, showing the difference, when go mod tidy would change go.mod or
## go.sum.
tidy:
	go mod tidy -diff

env:
	@echo 'export CGO_CPPFLAGS="$(CGO_CPPFLAGS)" CGO_CFLAGS="$(CGO_CFLAGS)" CGO_CXXFLAGS="$(CGO_CXXFLAGS)"'

deps:
	@scripts/apt-install.sh $(DEMO_PACKAGES)

# The official openai npm client, which the bridge's tests drive.
NPM_TEST_DIRS := internal/bridge/testdata/openai-node

deps-test:
	@scripts/apt-install.sh $(TEST_PACKAGES)
	@scripts/npm-install.sh $(NPM_TEST_DIRS)
